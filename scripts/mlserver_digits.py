"""MLServer peer for the Open Inference Protocol (KServe v2) interop tests.

Run with the peers venv's python (scripts/peers_venv.sh prints its path):

  python scripts/mlserver_digits.py train OUTDIR
      Trains a scikit-learn LogisticRegression on assets/digits/train, on the 192 features that
      models/digits-v1's preprocessing yields (RGB, 8x8 bilinear resize, x/255, (x-0.5)/0.5,
      channels first, C,H,W order, float32). Writes an MLServer repository:
        OUTDIR/settings.json                      server: HTTP on 127.0.0.1, gRPC on 127.0.0.1 on
                                                  an ephemeral port, no metrics server, one process
        OUTDIR/digits-sklearn/model-settings.json  mlserver_sklearn.SKLearnModel, version v1
        OUTDIR/digits-sklearn/model.joblib
        OUTDIR/reference.json                     {model, version, mlserver, sklearn, numpy,
                                                  test_accuracy, samples: [{path (relative to
                                                  assets/digits/test, sorted), label, features
                                                  (192), predict_proba (10)}]}; predict_proba is
                                                  computed on the float32 features, so it equals
                                                  MLServer's FP32 answer exactly
  python scripts/mlserver_digits.py serve OUTDIR PORT
      Runs `mlserver start OUTDIR` with HTTP on 127.0.0.1:PORT; prints "ready" on stdout once
      /v2/health/ready and every model's /v2/models/NAME/ready answer 200 (60 s at most; the
      server's own logs go to stderr). Stops the server (its whole process group) on SIGTERM,
      SIGINT, SIGHUP, or when this script's parent process dies; exits with the server's status
      if the server stops by itself.

The HTTP port comes from the MLSERVER_HTTP_PORT environment variable, so settings.json must not
set http_port (a value in the file would win over the environment).
"""
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "assets" / "digits"
DEMO_MODEL = ROOT / "models" / "digits-v1"
MODEL_NAME = "digits-sklearn"
MODEL_VERSION = "v1"
READY_TIMEOUT_S = 60.0


# ---------------------------------------------------------------------------------------- train


def _preprocessor():
    config = json.loads((DEMO_MODEL / "preprocessor_config.json").read_text())
    assert config["image_processor_type"] == "ViTImageProcessor", config
    size = config["size"]
    return {
        "size": (size["width"], size["height"]),
        "resample": config.get("resample", 2),
        "rescale": config["rescale_factor"] if config.get("do_rescale", True) else None,
        "mean": config["image_mean"] if config.get("do_normalize", True) else None,
        "std": config["image_std"] if config.get("do_normalize", True) else None,
    }


def features(path, pre):
    """The 192 float32 values ViTImageProcessor gives models/digits-v1 for one image, C,H,W."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    if rgb.size != pre["size"]:
        rgb = rgb.resize(pre["size"], resample=pre["resample"])
    x = np.asarray(rgb)  # H, W, C uint8
    if pre["rescale"] is not None:
        # transformers' rescale: multiply in float64, then cast to float32.
        x = (x.astype(np.float64) * pre["rescale"]).astype(np.float32)
    else:
        x = x.astype(np.float32)
    if pre["mean"] is not None:
        # transformers' normalize: float32 arithmetic.
        x = (x - np.asarray(pre["mean"], dtype=np.float32)) / np.asarray(pre["std"], dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32).reshape(-1)


def _split(name, pre, label2id):
    import numpy as np

    root = DIGITS / name
    paths = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.png"))
    x = np.stack([features(root / p, pre) for p in paths])
    y = np.array([label2id[p.split("/")[0]] for p in paths], dtype=np.int64)
    return paths, x, y


def train(outdir):
    import joblib
    import numpy as np
    import sklearn
    from sklearn.linear_model import LogisticRegression

    import mlserver

    outdir = Path(outdir).resolve()
    pre = _preprocessor()
    config = json.loads((DEMO_MODEL / "config.json").read_text())
    label2id = {label: int(i) for label, i in config["label2id"].items()}
    num_labels = len(label2id)

    _, x_train, y_train = _split("train", pre, label2id)
    # lbfgs is deterministic; random_state pins anything that is not.
    model = LogisticRegression(max_iter=10000, random_state=0)
    model.fit(x_train, y_train)
    assert model.n_iter_.max() < model.max_iter, "LogisticRegression did not converge"
    assert list(model.classes_) == list(range(num_labels)), model.classes_

    paths, x_test, y_test = _split("test", pre, label2id)
    proba = model.predict_proba(x_test)
    accuracy = float((proba.argmax(axis=1) == y_test).mean())

    model_dir = outdir / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / "model.joblib")
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": MODEL_VERSION},
        # MLServer reports these as the model's OIP metadata. SKLearnModel answers `predict`
        # (INT64 [N,1]) unless the request names outputs. predict_proba keeps the input dtype:
        # FP32 in, FP32 out (FP64 in, FP64 out).
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, x_train.shape[1]]}],
        "outputs": [{"name": "predict_proba", "datatype": "FP32", "shape": [-1, num_labels]}],
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2) + "\n")
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        # http_port comes from MLSERVER_HTTP_PORT (serve sets it); do not put it here.
        "grpc_port": 0,  # gRPC cannot be turned off: an ephemeral port on 127.0.0.1
        "metrics_endpoint": None,  # no metrics server (port 8082) and no /metrics
        "parallel_workers": 0,  # inference in the server process: no worker processes
        "load_models_at_startup": True,
    }
    (outdir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    reference = {
        "model": MODEL_NAME,
        "version": MODEL_VERSION,
        "mlserver": mlserver.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "test_accuracy": accuracy,
        "samples": [
            {
                "path": path,
                "label": int(label),
                "features": [float(v) for v in feats],
                "predict_proba": [float(v) for v in p],
            }
            for path, label, feats, p in zip(paths, y_test, x_test, proba)
        ],
    }
    (outdir / "reference.json").write_text(json.dumps(reference) + "\n")
    print(
        f"trained {MODEL_NAME}: {len(y_train)} train images, test accuracy {accuracy:.4f} "
        f"on {len(paths)} images; repository in {outdir}",
        file=sys.stderr,
    )


# ---------------------------------------------------------------------------------------- serve

PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: the server gets SIGTERM if this script dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def serve(outdir, port):
    outdir = Path(outdir).resolve()
    if not (outdir / "settings.json").is_file():
        sys.exit(f"mlserver_digits: {outdir}/settings.json missing (run `train {outdir}` first)")
    settings = json.loads((outdir / "settings.json").read_text())
    if "http_port" in settings:
        sys.exit(f"mlserver_digits: {outdir}/settings.json sets http_port; remove it")
    models = sorted(
        json.loads(p.read_text())["name"] for p in outdir.glob("**/model-settings.json")
    )
    port = int(port)
    original_parent = os.getppid()

    mlserver = Path(sys.executable).parent / "mlserver"
    env = dict(os.environ, MLSERVER_HTTP_PORT=str(port), MLSERVER_HOST="127.0.0.1")
    server = subprocess.Popen(
        [str(mlserver), "start", str(outdir)],
        cwd=outdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,  # stdout carries only "ready"
        stderr=sys.stderr,
        start_new_session=True,  # its own process group: killpg reaches any worker it forks
        preexec_fn=_die_with_parent,
    )
    stop_request = []  # why we were asked to stop: (message, exit status)

    def stop_group():
        """SIGTERM the server's group, SIGKILL what is left after 5 s."""
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(server.pid, signal.SIGKILL)  # also any worker left behind
        except ProcessLookupError:
            pass
        server.wait()

    def on_signal(signum, _frame):
        # Only records the request: the main loop stops the server (no waiting in a handler).
        stop_request.append((None, 128 + signum))

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    def watch_parent():
        # Polls the parent process (not thread): a Rust test thread ending does not count.
        while True:
            if os.getppid() != original_parent:
                stop_request.append(("parent process died; stopping MLServer", 1))
                return
            time.sleep(0.5)

    threading.Thread(target=watch_parent, daemon=True).start()

    def check_stop():
        if stop_request:
            message, status = stop_request[0]
            if message:
                print(f"mlserver_digits: {message}", file=sys.stderr)
            stop_group()
            sys.exit(status)

    base = f"http://127.0.0.1:{port}"
    urls = [f"{base}/v2/health/ready"] + [f"{base}/v2/models/{m}/ready" for m in models]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not all(_http_ok(url) for url in urls):
        check_stop()
        if server.poll() is not None:
            stop_group()
            sys.exit(f"mlserver_digits: MLServer exited with status {server.returncode} before ready")
        if time.monotonic() > deadline:
            stop_group()
            sys.exit(
                f"mlserver_digits: MLServer not ready on {base} after {READY_TIMEOUT_S:.0f} s "
                f"(waited for {', '.join(urls)})"
            )
        time.sleep(0.1)
    print("ready", flush=True)

    while server.poll() is None:
        check_stop()
        time.sleep(0.1)
    # The server stopped by itself: clear its group and pass its status on.
    status = server.returncode
    stop_group()
    print(f"mlserver_digits: MLServer exited with status {status}", file=sys.stderr)
    sys.exit(status if status >= 0 else 128 - status)


def main(argv):
    if len(argv) == 3 and argv[1] == "train":
        train(argv[2])
    elif len(argv) == 4 and argv[1] == "serve":
        serve(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
