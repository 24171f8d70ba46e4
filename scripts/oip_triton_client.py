"""Calls an Open Inference Protocol server with NVIDIA's tritonclient[http], the way any OIP user
would, and prints what it got as JSON (tests/remote.rs compares it with `modeldeck predict`).

  python scripts/oip_triton_client.py HOST:PORT MODEL image|text|embedding INPUT...

INPUT is an image file (image) or a text (text, embedding). The script:
  - checks liveness, readiness, and reads the server and model metadata;
  - infers twice: with binary tensors both ways (tritonclient's default: raw bytes after the
    JSON header), and with JSON only (images as base64 strings, as JSON cannot carry raw bytes);
  - sends two requests that must fail (an unknown model; text to an image model, or an image
    to a text model) and records the server's messages.
Run it with the peers venv's python (scripts/peers_venv.sh).
"""
import base64
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def infer(client, model, name, data, outputs, binary):
    tensor = httpclient.InferInput(name, [len(data)], "BYTES")
    tensor.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)
    wanted = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs]
    result = client.infer(model, [tensor], outputs=wanted, request_id="triton-%s" % ("binary" if binary else "json"))
    answer = {}
    for o in outputs:
        array = result.as_numpy(o)
        if array.dtype == np.object_:
            answer[o] = [v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
        else:
            answer[o] = array.astype(np.float64).tolist()
    response = result.get_response()
    answer["id"] = response.get("id")
    answer["model_name"] = response.get("model_name")
    return answer


def main(argv):
    address, model, kind = argv[1:4]
    items = argv[4:]
    client = httpclient.InferenceServerClient(url=address)
    out = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "server": client.get_server_metadata(),
        "model": client.get_model_metadata(model),
    }
    if kind == "image":
        files = [open(p, "rb").read() for p in items]
        name, outputs = "image", ["probabilities", "label"]
        binary_data = files
        json_data = [base64.b64encode(f).decode() for f in files]
        wrong = ("text", [b"not an image"])
    else:
        name = "text"
        outputs = ["embedding"] if kind == "embedding" else ["probabilities", "label"]
        binary_data = [t.encode() for t in items]
        json_data = list(items)
        wrong = ("image", [b"\x89PNG\r\n\x1a\n"])
    out["binary"] = infer(client, model, name, binary_data, outputs, True)
    out["json"] = infer(client, model, name, json_data, outputs, False)
    errors = {}
    try:
        infer(client, "no-such-model", name, binary_data, outputs, True)
    except InferenceServerException as e:
        errors["unknown_model"] = {"status": e.status(), "message": e.message()}
    try:
        infer(client, model, wrong[0], wrong[1], outputs, True)
    except InferenceServerException as e:
        errors["wrong_input"] = {"status": e.status(), "message": e.message()}
    out["errors"] = errors
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
