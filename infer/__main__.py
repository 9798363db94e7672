"""Tag pages: ``python -m infer --model DIR INPUT [-o OUTPUT.jsonl]``.

INPUT by form: a folder (every *.txt in it, sorted, one page each, id = file name), a .txt file (one
page), ``-`` (JSONL on stdin), anything else (page JSONL). Rerunning with the same -o resumes.
Under torchrun / accelerate launch (WORLD_SIZE > 1) each rank tags every WORLD_SIZE-th block and
rank 0 merges the parts into OUTPUT.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from data.text import WINDOW_PLANS
from infer.jobs import Job, JobError, check_input


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m infer", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", metavar="INPUT", help="folder of .txt, a .txt file, '-' for stdin JSONL, or page JSONL")
    ap.add_argument("--model", required=True, metavar="DIR", help="a model folder written by python -m train")
    ap.add_argument("-o", "--output", metavar="OUTPUT.jsonl", help="output JSONL (default: stdout); an existing file is resumed")
    ap.add_argument("--batch-tokens", type=int, default=None, metavar="N",
                    help="subword tokens per batch (default 4096 on a CPU, 16384 on a GPU)")
    ap.add_argument("--block-size", type=int, default=256, metavar="N",
                    help="input records per block; batches never cross blocks, so resumed and sharded runs write "
                         "the same bytes (default 256). Keep it the same when resuming. A model with repeat keys "
                         "(config.line_repeats) counts each line on the pages of its group in the block")
    ap.add_argument("--pages-alone", action="store_true",
                    help="tag every page as if on its own: no repeat keys (a model with config.line_repeats), so a "
                         "page's output depends on nothing but the page")
    ap.add_argument("--windows", choices=WINDOW_PLANS, default=None,
                    help="how a long page is cut into encoder windows (default lines: whole lines, no overlap; "
                         "line: one window per line; short/align: fixed windows overlapping by the model's stride)")
    ap.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                    help="run the encoder in PyTorch or in ONNX Runtime (CPU; pip install '.[onnx]')")
    ap.add_argument("--quantize", choices=("int8", "int8x3", "bf16"), default=None,
                    help="int8: dynamic int8 quantisation of the encoder (CPU): in PyTorch oneDNN's int8 products with AMX, "
                         "fbgemm's without; or ONNX Runtime; "
                         "int8x3: each encoder product as three int8 products of split weights and inputs, near "
                         "float32's precision (CPU with AMX only); "
                         "bf16: the encoder under bf16 autocast (fast on CPUs with AVX512_BF16 or AMX)")
    ap.add_argument("--overlap", choices=("central", "longest"), default="central",
                    help="where windows overlap: central (each word from the window where it has the most context) "
                         "or longest (the HF pipeline's rule: of two overlapping entities the longer; for its exact output)")
    ap.add_argument("--streams", type=int, default=None, metavar="N",
                    help="CPU: batches run side by side in N threads, each with its share of torch's threads "
                         "(default 2 where torch has 2 or more; the records are the same for any N)")
    ap.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=None,
                    help="read, parse and encode the next block in a worker thread while the model runs on this one "
                         "(default: on with a GPU; off on a CPU, where both cores already compute: 300 pages took 0.96-1.01x "
                         "the wall time with it); the records are the same either way")
    ap.add_argument("--section-once", metavar="LABELS", default=None,
                    help="comma-separated section labels that a page has at most one section of, e.g. title "
                         "(default: the model's config.section_once; 'none' for no such rule)")
    ap.add_argument("--section-required", metavar="LABELS", default=None,
                    help="comma-separated section labels that a page with lines has at least one section of, e.g. "
                         "body (default: the model's config.section_required; 'none' for no such rule)")
    ap.add_argument("--outside-bias", type=float, default=None, metavar="X",
                    help="subtract X from the NER tag O's log-probability before decoding: > 0 finds more entities "
                         "(recall up, precision down), < 0 fewer (default: the model's config.ner_outside_bias, "
                         "chosen on dev by training.outside_bias_grid, else 0)")
    ap.add_argument("--section-bias", metavar="LABEL=X,...", default=None,
                    help="added to these section labels' log-probabilities before the section decoding, e.g. "
                         "title=-1.5,boilerplate=1 (default: the model's config.section_label_bias, chosen on dev by "
                         "training.section_bias_rounds; 'none' for none)")
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    ap.add_argument("--dtype", choices=("float32", "bfloat16", "float16", "auto"), default="auto")
    ap.add_argument("--no-text", action="store_true", help="leave 'text' out of the output records")
    ap.add_argument("--html", metavar="DIR", help="also write an HTML page view per page and DIR/index.html")
    ap.add_argument("--max-chars", type=int, default=None, metavar="N",
                    help="hard maximum page length; longer pages get an error record (default: the tagger's, 5,000,000)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = ap.parse_args(argv)
    if args.outside_bias is not None or args.section_bias is not None:
        from model.crf import check_outside_bias, parse_section_bias

        try:
            if args.outside_bias is not None:
                args.outside_bias = check_outside_bias(args.outside_bias)
            args.section_bias = parse_section_bias(args.section_bias)
        except ValueError as err:
            ap.error(f"--outside-bias / --section-bias: {err}")
    if args.block_size < 1 or (args.batch_tokens is not None and args.batch_tokens < 1):
        ap.error("--block-size and --batch-tokens must be positive")
    return args


def _dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as set by torchrun or accelerate launch."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _device(name: str, world: int, local_rank: int) -> str | None:
    if name == "auto":
        name = None
        try:
            import torch
            if torch.cuda.is_available():
                name = "cuda"
        except ImportError:
            pass
    if name == "cuda" and world > 1:
        return f"cuda:{local_rank}"
    return name


def _check_writable(out: Path) -> None:
    """Fail before the model loads when the output cannot be written (and create nothing)."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise JobError(f"output {out} is a folder")
    if not parent.is_dir():
        raise JobError(f"output folder {parent} does not exist")
    if not os.access(out if out.exists() else parent, os.W_OK):
        raise JobError(f"cannot write output {out}: permission denied")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank, world, local_rank = _dist_env()
    try:
        if world > 1 and not args.output:
            raise JobError("a sharded run (WORLD_SIZE > 1) needs -o OUTPUT.jsonl")
        check_input(args.input)
        if world > 1 and args.input == "-":
            raise JobError("a sharded run cannot read stdin: give a file or folder")
        if args.output:
            _check_writable(Path(args.output))
        if not Path(args.model).is_dir():
            what = "is a file, not a model folder" if Path(args.model).exists() else "not found"
            raise JobError(f"model folder {args.model}: {what}")
        from infer.tagger import Tagger
        from model.crf import parse_section_labels

        try:
            tagger = Tagger.from_pretrained(args.model, device=_device(args.device, world, local_rank),
                                            dtype=None if args.dtype == "auto" else args.dtype,
                                            batch_tokens=args.batch_tokens, block_size=args.block_size,
                                            windows=args.windows, backend=args.backend, quantize=args.quantize,
                                            streams=args.streams, overlap=args.overlap, prefetch=args.prefetch,
                                            section_once=parse_section_labels(args.section_once),
                                            section_required=parse_section_labels(args.section_required),
                                            outside_bias=args.outside_bias,
                                            section_bias=args.section_bias, alone=args.pages_alone)
        except (FileNotFoundError, ValueError, OSError, RuntimeError, AssertionError, ImportError) as err:
            raise JobError(f"cannot load the model from {args.model}: {err}") from None
        max_chars = args.max_chars if args.max_chars is not None else getattr(tagger, "max_chars", 5_000_000)
        if hasattr(tagger, "max_chars"):
            tagger.max_chars = max_chars
        view = None
        if args.html and rank == 0:
            from infer.view import ViewWriter
            view = ViewWriter(args.html)
        job = Job(tagger=tagger, input=args.input, output=Path(args.output) if args.output else None,
                  block_size=args.block_size, max_chars=max_chars, no_text=args.no_text, rank=rank, world=world,
                  progress=not args.no_progress, on_record=view.add if view else None)
        try:
            job.run()
        finally:
            if view:
                view.close()
    except JobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m infer ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as err:  # disk full, output folder removed mid-run...
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
