"""The ``dora-clean`` command line: a thin layer over the library."""
from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from pathlib import Path

import click

from .errors import DoraError
from .analysis.outliers import DEFAULT_METHOD, METHODS
from .scoring import CLASS_LAMBDA, DEFAULT_AGREEMENT, DEFAULT_POOLING, Seed

__all__ = ["main"]

_DEBUG = {"on": False}


def _floats(value: str | None, name: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        parts = tuple(float(x) for x in value.replace(" ", ",").split(",") if x)
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise click.BadParameter(f"{name} takes three numbers, like 0.485,0.456,0.406")
    return parts  # type: ignore[return-value]


def _neurons(value: str | None) -> list[int] | None:
    """``0-63`` or ``1,5,9`` or ``0-9,20``."""
    if not value:
        return None
    out: list[int] = []
    try:
        for part in value.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            elif part.strip():
                out.append(int(part))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give neuron ids like 0-63 or 1,5,9") from None
    return out


def handle_errors(fn):
    """One line for a user error (exit 2), a short line for anything else (exit 1); tracebacks with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DoraError as e:
            if _DEBUG["on"]:
                traceback.print_exc()
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; run the same command again to resume", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:
            if _DEBUG["on"]:
                traceback.print_exc()
            first = str(e).splitlines()[0] if str(e) else ""
            click.echo(f"error: {type(e).__name__}: {first} (run with --debug for the traceback)", err=True)
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="dora-clean")
def main(debug: bool) -> None:
    """Find the neurons of a vision model that learned dataset artifacts
    (watermarks, rulers, text stamps), and use them to clean the dataset.

    \b
    Start here:
      dora-clean demo                  the whole pipeline on a bundled example
      dora-clean scan DATASET          scan your own image folder
      dora-clean review RUN            look at the flagged images in the FiftyOne App
      dora-clean export RUN --to DIR   write a cleaned copy of the dataset
      dora-clean apply RUN NEW_DIR     flag new images with the scan's findings
    """
    _DEBUG["on"] = debug
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    logging.getLogger("fiftyone").setLevel(logging.WARNING)


def _scan_options(fn):
    options = [
        click.option("--model", "model", metavar="SPEC", default=None,
                     help="torchvision architecture (resnet18, vit_b_16), timm:NAME (with timm installed), "
                          "path/to/file.py:ATTR, package.module:ATTR, or a TorchScript / torch.export file. "
                          "Default: the bundled demo model."),
        click.option("--weights", type=click.Path(dir_okay=False), default=None,
                     help="A state-dict file (.pth, .safetensors) to load into the model. Without it, a model by "
                          "name has random weights (nothing is downloaded)."),
        click.option("--trust-model-file", is_flag=True,
                     help="Allow model files that are full pickles (they can run code)."),
        click.option("--layer", default=None, metavar="NAME",
                     help="Dotted layer name (layer4, features.28). Default: the layer that feeds the classifier."),
        click.option("--labels", type=click.Path(dir_okay=False), default=None,
                     help="Optional CSV with columns filepath,artifact (path relative to DATASET, 0/1) for ROC/AUC."),
        click.option("--out", type=click.Path(file_okay=False), default=None,
                     help="The run directory. Default: ./dora-runs/<dataset name>."),
        click.option("--image-size", type=click.IntRange(8, 4096), default=None,
                     help="The model's input side; images are resized to it. Default: 224 (64 for the demo model)."),
        click.option("--mean", default=None, help="Input normalisation mean, three numbers. Default: ImageNet's."),
        click.option("--std", default=None, help="Input normalisation std, three numbers. Default: ImageNet's."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--batch-size", type=click.IntRange(1, 65536), default=64, show_default=True),
        click.option("--workers", type=click.IntRange(0, 256), default=None,
                     help="Image-decoding worker processes. Default: none with 2 CPU cores or fewer, "
                          "else half the cores (at most 8)."),
        click.option("--no-fiftyone", is_flag=True, help="Keep the results on disk only; no FiftyOne dataset."),
        click.option("--ray", "ray", metavar="ADDRESS", default=None,
                     help="Run the s-AMS and the scan on Ray: local (start Ray on this machine), auto "
                          "(RAY_ADDRESS or a running cluster) or ray://HOST:PORT. Every node needs dora-clean "
                          'and the dataset at the same path. Needs pip install "dora-clean[ray]".'),
        click.option("--neurons", default=None, metavar="IDS",
                     help="Neurons to analyse, like 0-63 or 1,5,9. Default: all of the layer."),
        click.option("--signals", type=click.IntRange(1, 256), default=4, show_default=True,
                     help="s-AMS per neuron."),
        click.option("--steps", type=click.IntRange(1, 100000), default=128, show_default=True,
                     help="Optimisation steps of the s-AMS."),
        click.option("--sams-size", type=click.IntRange(8, 1024), default=None,
                     help="Side of the s-AMS images. Default: the image size, at most 128."),
        click.option("--lr", type=click.FloatRange(0, min_open=True), default=0.05, show_default=True,
                     help="s-AMS learning rate (Adam)."),
        click.option("--sams-batch-size", type=click.IntRange(1, None), default=256, show_default=True,
                     help="s-AMS images optimised at once (lower it if memory runs short)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--outlier-method", type=click.Choice(list(METHODS)), default=DEFAULT_METHOD,
                     show_default=True, help="Outlier score on the EA distance (knn: mean distance to the 5 nearest "
                                             "neurons; group: to the 9th-13th nearest, so a small group of detectors "
                                             "counts; knn+group: both in turns; lof: the DORA notebooks' "
                                             "LocalOutlierFactor)."),
        click.option("--representation", type=click.Choice(["standardised", "raw"]), default="standardised",
                     show_default=True, help="How the EA distance sees the layer's responses to the s-AMS: each "
                                             "responding neuron z-scored over the s-AMS, or raw (the DORA paper's)."),
        click.option("--infected", "n_infected", type=click.IntRange(0, None), default=None,
                     help="How many infected neurons to take. Default: 5% of the layer (at least 1); with another "
                          "--outlier-method than knn+group, its clear outliers (at most 5%)."),
        click.option("--pooling", type=click.Choice(["mean", "max", "auto", "cls"]), default=DEFAULT_POOLING,
                     show_default=True,
                     help="How a neuron's activation map becomes an image score: its mean or its peak (max); auto: "
                          "the mean, or, where none of its findings is confident, the peak where its split stands "
                          "clearly further from a bell curve's (a small artifact on a large map). What is read from "
                          "the peak is never confident: it is left for review (docs/method.md, step 5). For a "
                          "transformer layer the map is its patch tokens (class and register tokens left out); "
                          "cls: the class token's value instead."),
        click.option("--prefix-tokens", type=click.IntRange(0, None), default=None, metavar="N",
                     help="How many class and register tokens come before a transformer layer's patch tokens, "
                          "where the model does not say (default: read from the model, else inferred)."),
        click.option("--flag-top", type=click.IntRange(0, None), default=None,
                     help="Flag the N highest-scoring images (instead of the label-free threshold)."),
        click.option("--threshold", type=float, default=None,
                     help="Flag images whose combined score exceeds this (instead of the label-free threshold)."),
        click.option("--agreement", type=click.FloatRange(0, 1), default=DEFAULT_AGREEMENT, show_default=True,
                     help="Infected neurons count in the combined score when their scores correlate this well "
                          "(|r|) with the best-corroborated one; 0 keeps them all."),
        click.option("--recruit/--no-recruit", default=True, show_default=True,
                     help="Let the layer's other neurons that reproduce the infected neurons' flagged set "
                          "(AUC >= 0.98 against it) join the combined score."),
        click.option("--class-folders/--no-class-folders", default=True, show_default=True,
                     help="Where the dataset has class folders, also let scores seeded by the layer's most "
                          "skewed and most bimodal neurons compete for the combined score, and set aside scores that "
                          "flag whole classes (class content, not an artifact). Turn off if the artifact may "
                          "cover most of one class (then, as in a flat folder, no finding is trusted without "
                          "review)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars or stage messages."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _settings(**o):
    from .pipeline import ScanSettings
    from .analysis.sams import SamsConfig

    return ScanSettings(
        model=o["model"], weights=o["weights"], layer=o["layer"], labels=o["labels"], out=o["out"],
        image_size=o["image_size"], mean=_floats(o["mean"], "--mean"), std=_floats(o["std"], "--std"),
        device=o["device"], batch_size=o["batch_size"], workers=o["workers"], fiftyone=not o["no_fiftyone"],
        trust_model_file=o["trust_model_file"], neurons=_neurons(o["neurons"]),
        sams=SamsConfig(n_signals=o["signals"], steps=o["steps"], size=o["sams_size"] or 0, lr=o["lr"],
                        seed=o["seed"], batch_size=o["sams_batch_size"]),
        outlier_method=o["outlier_method"], representation=o["representation"], n_infected=o["n_infected"],
        pooling=o["pooling"], prefix_tokens=o["prefix_tokens"], flag_top=o["flag_top"], threshold=o["threshold"],
        agreement=o["agreement"],
        recruit=o["recruit"], class_folders=o["class_folders"], progress=not o["quiet"], ray=o.get("ray"),
    )


#: Above this share of flagged images the CLI warns that the artifact's side may be the other one.
MINORITY_WARNING = 0.45


def _print_findings(summary: dict) -> None:
    """The table of findings: neurons, flagged images, confidence (and why not), AUC where labels were given."""
    findings = summary.get("findings") or []
    if not findings:
        return
    with_auc = any(f.get("auc") for f in findings)
    click.echo(f"findings ({len(findings)}):")
    click.echo(f"  {'#':>2} {'neurons':>7} {'infected':<12} {'flagged':>7} {'confident':<9}"
               + (f" {'AUC (label)':<20}" if with_auc else "") + " why not")
    for f in findings:
        c = f.get("confidence") or {}
        infected = ",".join(map(str, f.get("infected_neurons", []))) or "-"
        auc, label = "", f.get("label")
        if with_auc:
            text = f"{f['auc'][label]:.3f} ({label})" if label and f["auc"].get(label) is not None else "-"
            auc = f" {text:<20}"
        click.echo(f"  {f['id']:>2} {len(f['neurons']):>7} {infected[:12]:<12} {f['n_flagged']:>7} "
                   f"{'yes' if f['confident'] else 'no':<9}{auc} {'; '.join(c.get('reasons', [])) or '-'}")


def _print_confidence(summary: dict) -> None:
    """Say whether the flags are an artifact dora-clean trusts, and what export will do with them."""
    c = summary.get("confidence") or {}
    n = summary["n_flagged"]
    confident = [f["id"] for f in summary.get("findings", []) if f["confident"]]
    if summary.get("artifact_found"):
        assoc = c.get("class_association")
        by = f" by finding{'s' if len(confident) > 1 else ''} {', '.join(map(str, confident))}" if confident else ""
        click.echo(f"artifact found: {n} flagged images{by}, confident ({c['reproducing_neurons']} neurons of the "
                   "layer reproduce " + ("finding 1's" if len(confident) > 1 else "the") + " flags"
                   + ("" if assoc is None else f"; class association {assoc:.2f}")
                   + "); `dora-clean export` leaves them out")
    else:
        click.echo("no artifact found that dora-clean trusts: " + "; ".join(c.get("reasons", ["no confidence"])))
        if n:
            click.echo(f"  the {n} flagged images are left for review: `dora-clean export` leaves out only what is "
                       "tagged 'remove' (or, with --findings 1, finding 1's flags)")


def _print_summary(summary: dict, out: Path, quiet: bool) -> None:
    echo = click.echo
    inf = summary["infected_neurons"]
    echo(f"infected neurons: {', '.join(map(str, inf)) or 'none'} (of {summary['n_neurons']} in {summary['layer']})")
    combined = summary.get("combined_neurons", inf)
    left_out = [n for n in inf if n not in combined]
    joined = [n for n in combined if n not in inf]
    if joined:
        seed = Seed.parse(summary.get("combined_seed", ""))
        how = (f"grown from neuron {seed.neuron}, one of the layer's most {seed.kind}"
               if seed.kind in ("skewed", "bimodal") else "that reproduce the infected neurons' flagged set")
        echo(f"combined score: {len(combined)} neurons {how} "
             f"({', '.join(map(str, combined[:12]))}{', ...' if len(combined) > 12 else ''})")
    if summary.get("class_centred"):
        echo("scored again within the class folders: the first answer's flags (or a lone neuron's clean split) went "
             "with the classes, so each neuron's median in each class folder was taken away (--no-class-folders: not)")
    if summary.get("class_content"):
        echo(f"set aside: {len(summary['class_content'])} candidate score(s) whose flagged images are mostly whole "
             f"classes (class content, not an artifact; seeds {', '.join(summary['class_content'])}). "
             "--no-class-folders keeps them")
    if (summary.get("class_lambda") or 0) >= CLASS_LAMBDA:
        echo(f"warning: every candidate score flags mostly whole classes (the one used: lambda "
             f"{summary['class_lambda']:.2f}); the infected neurons may see class content rather than an artifact",
             err=True)
    if left_out:
        echo(f"not in the combined score: infected {', '.join(map(str, left_out))} (their scores do not go with "
             "the others' on this dataset; they are still in scores.csv, review them on their own)")
    if summary.get("dead_neurons"):
        echo(f"dead neurons: {len(summary['dead_neurons'])} (their s-AMS barely excite them; kept out)")
    echo(f"images: {summary['n_images']} scanned, {summary['n_flagged']} flagged, {summary['n_skipped']} skipped"
         + (" (see skipped.csv)" if summary["n_skipped"] else ""))
    _print_findings(summary)
    _print_confidence(summary)
    if summary.get("flagging") == "otsu" and summary["n_flagged"] > MINORITY_WARNING * summary["n_images"]:
        echo(f"warning: {summary['n_flagged'] / summary['n_images']:.0%} of the images are flagged. The score takes "
             "the artifact to be on the smaller side, which near half is a guess: check that the flagged images "
             "carry it", err=True)
    if summary.get("auc"):
        auc = summary["auc"]
        echo(f"AUC: combined {auc['combined']:.3f}, best infected neuron {summary['best_infected_auc']:.3f}, "
             f"best of all neurons {max(v for k, v in auc.items() if k != 'combined'):.3f}")
    echo(f"results: {out}  (report: {out / 'report.html'})")
    if summary.get("fiftyone_dataset"):
        echo(f"FiftyOne dataset: {summary['fiftyone_dataset']}")
    echo("next:")
    if summary.get("fiftyone_dataset"):
        echo(f"  dora-clean review {out}          # tag images 'remove' or 'keep' in the App")
    echo(f"  dora-clean export {out} --to CLEAN_DIR")


def _scan(dataset: str, o: dict) -> None:
    from .pipeline import default_run_dir, scan_dataset

    settings = _settings(**o)
    out = Path(settings.out) if settings.out else default_run_dir(Path(dataset))
    settings.out = str(out)
    log = (lambda m: None) if o["quiet"] else (lambda m: click.echo(m, err=True))
    summary = scan_dataset(dataset, settings, log=log)
    _print_summary(summary, out, o["quiet"])


@main.command()
@click.argument("dataset", type=click.Path())
@_scan_options
@handle_errors
def scan(dataset: str, **o) -> None:
    """Scan DATASET (a folder of images, flat or in class sub-folders).

    Finds the infected neurons of the model's layer from synthetic images
    (no data needed), scores every image by them, and writes a run directory
    with summary.json, scores.csv, neurons.csv, plots and report.html.
    A second run with the same settings reuses the cached work; an
    interrupted run resumes.
    """
    if not Path(dataset).is_dir():
        raise DoraError(f"dataset folder {dataset} does not exist" if not Path(dataset).exists()
                        else f"{dataset} is not a folder: give the folder that holds the images")
    _scan(dataset, o)


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="dora-demo", show_default=True,
              help="Where the demo writes its dataset and run directory.")
@click.option("--images", "n_images", type=click.IntRange(20, 100000), default=1000, show_default=True,
              help="How many images the demo dataset holds.")
@click.option("--no-fiftyone", is_flag=True, help="Keep the results on disk only; no FiftyOne dataset.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or stage messages.")
@handle_errors
def demo(workdir: str, n_images: int, no_fiftyone: bool, device: str, quiet: bool) -> None:
    """Run the whole pipeline on a bundled example.

    Writes a small dataset of shapes where a fifth of the images carry a
    planted text watermark (with labels.csv), then scans it with the bundled
    model, which learned the watermark as a shortcut. Nothing is downloaded.
    """
    from .demo import prepare_demo_dataset

    work = Path(workdir)
    if not quiet:
        click.echo(f"demo dataset: {n_images} shapes images, a fifth with a planted text watermark, in {work / 'dataset'}",
                   err=True)
    data = prepare_demo_dataset(work, n_images)
    o = {k: None for k in ("model", "weights", "layer", "image_size", "mean", "std", "neurons", "sams_size",
                           "n_infected", "flag_top", "threshold", "prefix_tokens")}
    o.update(labels=str(data / "labels.csv"), out=str(work / "run"), device=device, batch_size=64, workers=None,
             no_fiftyone=no_fiftyone, trust_model_file=False, signals=4, steps=128, lr=0.05, seed=0,
             sams_batch_size=256,
             outlier_method=DEFAULT_METHOD, representation="standardised", pooling=DEFAULT_POOLING,
             agreement=DEFAULT_AGREEMENT,
             recruit=True, class_folders=True, quiet=quiet)
    _scan(str(data), o)


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--address", default="127.0.0.1", show_default=True, help="Address the App listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5151, show_default=True)
@handle_errors
def review(run: str, address: str, port: int) -> None:
    """Open the FiftyOne App on the flagged images of RUN (until Ctrl-C).

    Tag images 'remove' (leave them out) or 'keep' (keep them although
    flagged), then run `dora-clean export RUN --to DIR`.
    """
    from .review import launch_review

    launch_review(run, address=address, port=port, wait=True)


def _finding_ids(value: str | None) -> list[int] | None:
    """``1,3`` (or ``1 3``) -> [1, 3]; a DoraError (one line) for anything else."""
    if value is None:
        return None
    parts = value.replace(",", " ").split()
    if not parts or not all(p.isdigit() for p in parts):
        raise DoraError(f"--findings {value!r}: give finding ids like 1,3 (see summary.json's findings)")
    return [int(p) for p in parts]


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "to", type=click.Path(file_okay=False), required=True, help="Where to write the cleaned copy.")
@click.option("--findings", "findings", metavar="IDS",
              help="Leave out the flags of these findings, like 1,3 (confident or not), plus what is tagged "
                   "'remove'; instead of the policy's choice.")
@click.option("--policy", type=click.Choice(["confident", "flagged", "tagged"]), default="confident",
              show_default=True,
              help="confident: leave out what is tagged 'remove', and the flags not tagged 'keep' of the findings "
                   "the scan trusts; flagged: of every finding; tagged: only what is tagged 'remove'.")
@click.option("--symlink", is_flag=True, help="Symlink the kept images instead of copying them.")
@click.option("--dry-run", is_flag=True, help="Print the counts; write nothing.")
@click.option("--overwrite", is_flag=True, help="Replace the contents of a non-empty --to folder.")
@click.option("--quiet", "-q", is_flag=True)
@handle_errors
def export(run: str, to: str, findings: str | None, policy: str, symlink: bool, dry_run: bool, overwrite: bool,
           quiet: bool) -> None:
    """Write a cleaned copy of RUN's dataset to --to (same layout), and removed.csv.

    The source dataset is never modified.
    """
    from .export import export_clean

    chosen = _finding_ids(findings)
    counts = export_clean(run, to, policy=policy, dry_run=dry_run, overwrite=overwrite,
                          mode="symlink" if symlink else "copy", findings=chosen)
    used = counts.get("findings") or []
    if used:
        click.echo(f"{'would leave' if dry_run else 'left'} out the flags of finding{'s' if len(used) > 1 else ''} "
                   f"{', '.join(map(str, used))}")
    else:
        click.echo("no finding's flags are left out" + (", only what is tagged 'remove'" if policy == "tagged" else ""))
    verb = "would keep" if dry_run else "kept"
    click.echo(f"{verb} {counts['kept']} of {counts['total']} images; left out {counts['removed_tagged']} tagged "
               f"'remove', {counts['removed_flagged']} flagged and {counts.get('removed_skipped', 0)} unreadable"
               + ("" if dry_run else f"; see {Path(to) / 'removed.csv'}"))
    if counts.get("left_for_review"):
        why = ("the scan trusts none of their findings" if chosen is None and policy == "confident"
               else "their findings were not chosen")
        click.echo(f"left for review: {counts['left_for_review']} flagged images were kept, because {why}; tag them "
                   "'remove' in `dora-clean review`, or export with --findings IDS or --policy flagged")


@main.command()
@click.argument("detector", metavar="RUN_OR_DETECTOR", type=click.Path())
@click.argument("dataset", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where the scores go. Default: ./dora-runs/<dataset name>-apply.")
@click.option("--model", "model", metavar="SPEC", default=None,
              help="The scan's model, where its spec in detector.json does not load it here (a moved file). "
                   "Its weights must be the scan's.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="The state-dict file the scan loaded into the model.")
@click.option("--trust-model-file", is_flag=True, help="Allow model files that are full pickles (they can run code).")
@click.option("--findings", "findings", metavar="IDS", default=None,
              help="Apply only these findings, like 1,3. Default: all of the detector's.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(1, 65536), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="Image-decoding worker processes. Default: as for scan.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or stage messages.")
@handle_errors
def apply(detector: str, dataset: str, findings: str | None, quiet: bool, **options) -> None:
    """Flag the images of DATASET with the findings of an earlier scan.

    RUN_OR_DETECTOR is a run directory of `dora-clean scan` or its
    detector.json. The same model scores each image by each finding's
    neurons and threshold; no s-AMS are made. On the scanned dataset it
    flags what the scan flagged. Writes scores.csv, skipped.csv and
    summary.json.
    """
    from .detector import apply_detector, default_apply_dir

    if not Path(dataset).is_dir():
        raise DoraError(f"dataset folder {dataset} does not exist" if not Path(dataset).exists()
                        else f"{dataset} is not a folder: give the folder that holds the images")
    target = Path(options.pop("out") or default_apply_dir(Path(dataset)))
    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    summary = apply_detector(detector, dataset, _finding_ids(findings), log, out=target, progress=not quiet,
                             **options)
    click.echo(f"  {'finding':>7} {'flagged':>7} confident")
    for f in summary["findings"]:
        click.echo(f"  {f['id']:>7} {f['n_flagged']:>7} {'yes' if f['confident'] else 'no'}")
    click.echo(f"images: {summary['n_images']} scored, {summary['n_flagged']} flagged"
               + ("" if summary["artifact_found"] else " (no confident finding: finding "
                  f"{summary['findings'][0]['id']}'s flags, for review)")
               + f", {summary['n_skipped']} skipped" + (" (see skipped.csv)" if summary["n_skipped"] else ""))
    click.echo(f"results: {target}  (scores.csv, summary.json)")


if __name__ == "__main__":
    main()
