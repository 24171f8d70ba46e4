# Reference values for ModelDeck's Kayenta judgement (src/stats/mannwhitney.rs).
#
# Kayenta's MannWhitney.scala is "derived from the R Wilcoxon test implementation
# (asymptotic, two-sample confidence interval logic)", so the reference is R's own
#   wilcox.test(b, a, conf.int = TRUE, exact = FALSE, correct = TRUE, conf.level = ...)
# with b the experiment (canary, arm B) and a the control (baseline, arm A): the interval
# is for the shift B - A, Kayenta's direction.
#
# R finds each bound with uniroot(tol = 1e-4) on a step function whose steps sit at the
# pairwise differences b_j - a_i, so its bound lies within about 1e-4 of one difference.
# The script records R's value ("conf_int") and that difference ("conf_int_step"), after
# checking that it is unambiguous (no other distinct difference within 1e-3). The estimate
# is likewise a root inside the step that holds the Hodges-Lehmann estimate; the step's
# ends ("estimate_step", the two middle order statistics of the differences) are recorded.
# A case where R refuses (all observations tied) records R's error message.
#
# Writes tests/fixtures/stats/kayenta_cases.json; tests/kayenta_reference.rs reads it.
# Usage (Debian: apt-get install r-base-core):  Rscript scripts/kayenta_reference.R

RNGversion("4.2.0")
args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
root <- normalizePath(file.path(dirname(script), ".."))
fixtures <- file.path(root, "tests", "fixtures", "stats")

levels <- c(0.98, 0.95)
tolerance <- 0.25

# ---- a minimal JSON writer with round-trip precision (%.17g) -------------------------
num <- function(x) {
  if (length(x) != 1) stop("num() takes one value")
  if (is.na(x) || !is.finite(x)) return("null")
  sprintf("%.17g", x)
}
arr <- function(v) paste0("[", paste(vapply(v, num, ""), collapse = ","), "]")
str_json <- function(s) paste0('"', gsub('"', '\\\\"', gsub("\\\\", "\\\\\\\\", s)), '"')
obj <- function(fields) {
  keys <- names(fields)
  paste0("{", paste(sprintf("%s: %s", vapply(keys, str_json, ""), unlist(fields)), collapse = ", "), "}")
}

# ---- one case --------------------------------------------------------------------------
snap <- function(root_value, diffs) {
  distinct <- unique(diffs)
  order_by_distance <- order(abs(distinct - root_value))
  nearest <- distinct[order_by_distance[1]]
  if (abs(nearest - root_value) > 2e-4 * max(1, abs(nearest))) {
    stop(sprintf("R's root %.17g is not at a pairwise difference (nearest %.17g)", root_value, nearest))
  }
  # Differences that agree to 1e-9 are one step (b_j - a_i rounds differently for different pairs).
  others <- distinct[abs(distinct - nearest) > 1e-9 * max(1, abs(nearest))]
  if (length(others) > 0 && min(abs(others - root_value)) < 1e-3) {
    stop(sprintf("R's root %.17g is ambiguous between two pairwise differences", root_value))
  }
  nearest
}

level_result <- function(a, b, conf_level) {
  # R 4.2 warns "cannot compute confidence interval when all observations are tied" and
  # then fails on the NaN it computed; keep both messages.
  warnings <- character()
  r <- tryCatch(
    withCallingHandlers(
      wilcox.test(b, a, conf.int = TRUE, exact = FALSE, correct = TRUE, conf.level = conf_level),
      warning = function(w) {
        warnings <<- c(warnings, conditionMessage(w))
        invokeRestart("muffleWarning")
      }
    ),
    error = function(e) e
  )
  if (inherits(r, "error")) {
    message <- paste(c(unique(warnings), conditionMessage(r)), collapse = "; then: ")
    return(obj(list(conf_level = num(conf_level), error = str_json(message))))
  }
  if (length(warnings) > 0) stop(paste("unexpected warning:", warnings))
  diffs <- sort(as.vector(outer(b, a, "-")))
  total <- length(diffs)
  step <- c(snap(r$conf.int[1], diffs), snap(r$conf.int[2], diffs))
  estimate_step <- c(diffs[floor((total + 1) / 2)], diffs[floor(total / 2) + 1])
  hodges_lehmann <- median(diffs)
  critical <- tolerance * abs(hodges_lehmann)
  verdict <- if (step[1] > critical) "High" else if (step[2] < -critical) "Low" else "Pass"
  obj(list(
    conf_level = num(conf_level),
    conf_int = arr(as.vector(r$conf.int)),
    conf_int_step = arr(step),
    estimate = num(unname(r$estimate)),
    estimate_step = arr(estimate_step),
    p_value = num(r$p.value),
    verdict = str_json(verdict)
  ))
}

case <- function(name, a, b, note, a_csv = NULL, b_csv = NULL) {
  fields <- list(name = str_json(name), note = str_json(note))
  if (is.null(a_csv)) {
    fields$a <- arr(a)
    fields$b <- arr(b)
  } else {
    fields$a_csv <- str_json(a_csv)
    fields$b_csv <- str_json(b_csv)
  }
  fields$tolerance <- num(tolerance)
  fields$levels <- paste0("[", paste(vapply(levels, function(l) level_result(a, b, l), ""), collapse = ", "), "]")
  obj(fields)
}

latencies <- function(n, scale, sdlog = 0.35, digits = 2) round(rlnorm(n, log(scale), sdlog), digits)

csv_case <- function(name, note) {
  a_csv <- paste0(name, "_a.csv")
  b_csv <- paste0(name, "_b.csv")
  a <- read.csv(file.path(fixtures, a_csv))$latency_ms
  b <- read.csv(file.path(fixtures, b_csv))$latency_ms
  case(name, a, b, note, a_csv, b_csv)
}

# p-value far in the tail: a shift that puts R's p-value just below 1e-300.
tail_case <- function(n) {
  set.seed(2300)
  a <- latencies(n, 40)
  noise <- latencies(n, 40)
  for (shift in seq(0, 60, by = 0.05)) {
    b <- round(noise + shift, 2)
    p <- wilcox.test(b, a, exact = FALSE, correct = TRUE)$p.value
    if (p < 1e-300) return(list(a = a, b = b, shift = shift))
  }
  stop("no shift reached p < 1e-300")
}

cases <- list()
add <- function(x) cases[[length(cases) + 1]] <<- x

add(case("kayenta_suite", c(1, 2, 3, 4), c(10, 20, 30, 40),
         "Kayenta's MannWhitneySuite example; at 0.98 the bounds are the search range's ends"))
add(case("tiny_ties", c(10, 12, 12, 15, 15, 20), c(12, 15, 15, 18, 21, 21, 30),
         "tiny samples with ties within and across arms"))
set.seed(606)
six_a <- latencies(6, 40, 0.3, 1)
six_b <- latencies(6, 44, 0.3, 1)
add(case("six_latencies", six_a, six_b,
         "six latencies per arm: the old order-statistic interval [D(5), D(32)] was one difference too wide on each side"))
set.seed(5)
add(case("n5", latencies(5, 40), latencies(5, 48), "five values per arm"))
set.seed(50)
add(case("n50", latencies(50, 40), latencies(50, 43), "fifty values per arm, small shift"))
set.seed(2000)
add(case("n2000", latencies(2000, 40), latencies(2000, 41.2), "2000 values per arm, 3% shift"))
set.seed(2001)
add(case("n2000_unequal", latencies(1500, 40), latencies(2000, 30), "1500 against 2000 values, B faster"))
far <- tail_case(1500)
add(case("p_below_1e300", far$a, far$b, sprintf("1500 per arm, B shifted by %.2f ms: p-value below 1e-300", far$shift)))
set.seed(20)
same <- latencies(20, 40)
add(case("identical", same, same, "identical arms: interval symmetric about 0"))
set.seed(8)
add(case("one_constant_arm", rep(40, 8), latencies(10, 44), "control constant, experiment varying"))
set.seed(9)
add(case("one_constant_experiment", latencies(9, 40), rep(38.5, 7), "experiment constant, control varying"))
add(case("one_against_many", c(1), 2:60, "one control value: R returns an end of the search range"))
add(case("all_tied", rep(5, 6), rep(5, 4), "every observation tied: R refuses"))
add(case("each_arm_constant", rep(5, 6), rep(7, 4), "each arm constant but different: R refuses as well"))
add(csv_case("ab_tiny_ties", "arms of the ab_tiny_ties abtest fixture"))
add(csv_case("ab_tiny_exact", "arms of the ab_tiny_exact abtest fixture"))
add(csv_case("ab_equal_accuracy", "arms of the ab_equal_accuracy abtest fixture"))
add(csv_case("ab_b_3_points_better", "arms of the ab_b_3_points_better abtest fixture"))
add(csv_case("shadow_paired", "arms of the shadow_paired abtest fixture (latencies of all rows)"))

out <- file.path(fixtures, "kayenta_cases.json")
header <- obj(list(
  made_by = str_json("scripts/kayenta_reference.R"),
  r_version = str_json(R.version.string),
  call = str_json("wilcox.test(b, a, conf.int=TRUE, exact=FALSE, correct=TRUE, conf.level=conf_level)")
))
writeLines(c("{", paste0('"about": ', header, ","), '"cases": [',
             paste(unlist(cases), collapse = ",\n"), "]}"), out)
cat("wrote", out, "\n")
