"""Plant known bugs in the method's core, one at a time, and check the tests catch each.

    python tools/mutation_check.py            # every mutant
    python tools/mutation_check.py -k mixup   # mutants whose name contains "mixup"
    python tools/mutation_check.py --list

Each mutant replaces one exact snippet of one file (or a few, applied together) in a
scratch copy of the repository and runs its tests there (PYTHONPATH = the copy). Result per
mutant: KILLED (a test failed), SURVIVED (all passed: a hole in the suite) or ERROR (a
snippet is not found exactly once: the code moved on, update the table). The listed tests
are first run on an unmodified copy and must pass. Exit status 0 only when every mutant is
killed.

The table MUTANTS is the one place to edit: (name, file, [(original, replacement), ...],
[pytest arguments]).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, NamedTuple, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL_SKIPPED = {".git", ".venv", "outputs", "data", "build"}  # not needed by the tests


def _ignored(folder, names):
    top = os.path.abspath(folder) == REPO
    return [n for n in names if (top and n in TOP_LEVEL_SKIPPED) or n in ("__pycache__", ".pytest_cache")
            or n.endswith(".egg-info")]


class Mutant(NamedTuple):
    name: str
    path: str  # relative to the repository root
    edits: Sequence[Tuple[str, str]]  # (exact original snippet, replacement)
    tests: Sequence[str]  # pytest arguments (files, -k expressions)


LOSSES, SAMPLING = "multitrain/models/losses.py", "multitrain/data/sampling.py"
MIXUP, STEP = "multitrain/transforms/mixup.py", "multitrain/engine/train_step.py"
CKPT, EVAL = "multitrain/checkpoint/checkpointer.py", "multitrain/engine/evaluator.py"
T_LOSSES, T_SAMPLING, T_MIXUP = "tests/models/test_losses.py", "tests/data/test_sampling.py", "tests/data/test_mixup.py"
T_STEP, T_CKPT = "tests/engine/test_train_step.py", "tests/engine/test_checkpoint.py"
T_ACCURACY = "tests/tools/test_run_net_accuracy.py"
T_CONFORMANCE = "tests/models/test_conformance.py"

MUTANTS: List[Mutant] = [
    # ------------------------------------------------------------------ losses
    Mutant("loss_proj_l1_weight_dropped", LOSSES, [(
        'terms["loss_proj_l1"] = (self.proj_sparsity_weight * self.grad_scale',
        'terms["loss_proj_l1"] = (self.grad_scale')], [T_LOSSES]),
    Mutant("loss_mask_ignored", LOSSES, [(
        "cls_d = (mask * per_sample_loss(", "cls_d = (1.0 * per_sample_loss(")], [T_LOSSES]),
    Mutant("loss_proj_summed_over_sources", LOSSES, [(
        "per_src.mean(dim=1)", "per_src.sum(dim=1)")], [T_LOSSES]),
    Mutant("loss_dataset_weight_ignored", LOSSES, [(
        "cls_sum = cls_sum + self.loss_weights[d] * cls_d", "cls_sum = cls_sum + cls_d")], [T_LOSSES]),
    Mutant("loss_informative_biased_covariance", LOSSES, [(
        "cov = (z.t() @ z) / (batch - 1)", "cov = (z.t() @ z) / batch")],
        [T_LOSSES, T_CONFORMANCE, "-k", "informative"]),
    Mutant("loss_informative_std_eps", LOSSES, [(
        "std = torch.sqrt(z.var(dim=0) + 1e-4)", "std = torch.sqrt(z.var(dim=0) + 1e-2)")],
        [T_LOSSES, T_CONFORMANCE, "-k", "informative"]),
    # ------------------------------------------------------------------ sampling
    Mutant("sampling_ssv2_train_segment_off_by_one", SAMPLING, [(
        "(u * (hi - lo + 1).double())", "(u * (hi - lo).double())")], [T_SAMPLING]),
    Mutant("sampling_ssv2_eval_midpoint_rounded_up", SAMPLING, [(
        "idx = (lo + hi) // 2", "idx = (lo + hi + 1) // 2")], [T_SAMPLING]),
    Mutant("sampling_offset_views_not_floored", SAMPLING, [(
        "view * math.floor(delta / (num_views - 1))", "view * delta / (num_views - 1)")], [T_SAMPLING]),
    Mutant("sampling_indices_rounded", SAMPLING, [(
        "np.clip(points.astype(np.int64)", "np.clip(np.round(points).astype(np.int64)")], [T_SAMPLING]),
    Mutant("sampling_span_rounded", SAMPLING, [(
        "return sampling_rate * num_frames / target_fps * video_fps",
        "return float(round(sampling_rate * num_frames / target_fps * video_fps))")], [T_SAMPLING]),
    # ------------------------------------------------------------------ mixup
    Mutant("mixup_lambda_from_cutmix_alpha", MIXUP, [(
        "lam = _beta(generator, cutmix_alpha if use_cutmix else alpha)",
        "lam = _beta(generator, cutmix_alpha)")], [T_MIXUP]),
    Mutant("mixup_labels_not_mixed_with_partner", MIXUP, [(
        "y * lam + y.flip(0) * (1.0 - lam)", "y * lam + y * (1.0 - lam)")], [T_MIXUP]),
    Mutant("mixup_cutmix_lambda_not_corrected", MIXUP, [(
        "lam = 1.0 - (y1 - y0) * (x1 - x0) / float(H * W)  # corrected to the clipped box",
        "lam = lam")], [T_MIXUP]),
    Mutant("mixup_inputs_partner_not_flipped", MIXUP, [(
        "return x * params.lam + partner * (1.0 - params.lam)",
        "return x * params.lam + x * (1.0 - params.lam)")], [T_MIXUP]),
    # ------------------------------------------------------------------ train step
    Mutant("step_clip_before_unscale", STEP, [
        ("    if scaler is not None:\n        scaler.unscale_(optimizer)\n    params =", "    params ="),
        ("        before = scaler.get_scale()\n",
         "        scaler.unscale_(optimizer)\n        before = scaler.get_scale()\n")], [T_STEP]),
    Mutant("step_accumulation_not_averaged", STEP, [("scaled = loss / n", "scaled = loss")], [T_STEP]),
    Mutant("step_grads_not_zeroed", STEP, [("optimizer.zero_grad(set_to_none=True)", "pass")], [T_STEP]),
    Mutant("step_clip_norm_ignored", STEP, [(
        "grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_norm))",
        "grad_norm = float(torch.nn.utils.clip_grad_norm_(params, float('inf')))")], [T_STEP]),
    # ------------------------------------------------------------------ checkpoint
    Mutant("checkpoint_resume_repeats_the_epoch", CKPT, [(
        '"start_epoch": epoch + 1 if it is None else epoch',
        '"start_epoch": epoch if it is None else epoch')], [T_CKPT]),
    Mutant("checkpoint_optimizer_not_restored", CKPT, [(
        '            self.optimizer.load_state_dict(ckpt["optimizer_state"])\n', "")], [T_CKPT]),
    # ------------------------------------------------------------------ evaluator
    Mutant("evaluator_test_labels_reversed", EVAL, [(
        "meter.set_labels(_multi_hot(dataset.video_labels(), dataset.num_classes))",
        "meter.set_labels(_multi_hot(list(dataset.video_labels())[::-1], dataset.num_classes))")],
        [T_ACCURACY]),
]


def apply_mutant(root: str, mutant: Mutant) -> str:
    """Apply `mutant` to the tree at `root`; "" on success, else why it cannot be applied."""
    path = os.path.join(root, mutant.path)
    if not os.path.isfile(path):
        return f"{mutant.path} not found"
    with open(path) as f:
        text = f.read()
    for original, replacement in mutant.edits:
        count = text.count(original)
        if count != 1:
            return f"{mutant.path}: snippet found {count} times (expected once): {original[:60]!r}"
        text = text.replace(original, replacement)
    with open(path, "w") as f:
        f.write(text)
    return ""


def run_tests(root: str, tests: Sequence[str], timeout: int) -> Tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=root, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout} s"
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    return r.returncode, lines[-1] if lines else r.stderr[-300:]


def scratch_copy(parent: str, name: str) -> str:
    root = os.path.join(parent, name)
    shutil.copytree(REPO, root, ignore=_ignored)
    return root


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", default="", help="only mutants whose name contains this")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument("--timeout", type=int, default=900, help="seconds per test run")
    args = p.parse_args(argv)
    mutants = [m for m in MUTANTS if args.k in m.name]
    if args.list or not mutants:
        for m in mutants:
            print(f"{m.name:<45s} {m.path}  ->  {' '.join(m.tests)}")
        return 0 if mutants else 2
    with tempfile.TemporaryDirectory(prefix="mutation_") as tmp:
        base = scratch_copy(tmp, "unmodified")
        for tests in sorted({tuple(m.tests) for m in mutants}):
            rc, summary = run_tests(base, tests, args.timeout)
            if rc != 0:
                print(f"BASELINE FAILS  {' '.join(tests)}: {summary}")
                return 1
        results = {}
        for m in mutants:
            start = time.time()
            root = scratch_copy(tmp, m.name)
            why = apply_mutant(root, m)
            if why:
                status, summary = "ERROR", why
            else:
                rc, summary = run_tests(root, m.tests, args.timeout)
                status = "SURVIVED" if rc == 0 else "KILLED"
            shutil.rmtree(root, ignore_errors=True)
            results[m.name] = status
            print(f"{status:<8s}  {m.name:<45s} {time.time() - start:6.1f} s  {summary}", flush=True)
    killed = sum(s == "KILLED" for s in results.values())
    print(f"{killed}/{len(results)} mutants killed")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
