"""`cogumi`: one CLI, one sub-command per stage plus `demo`, `pipeline`, `serve`, `pack`/`unpack`.

Only the standard library and the config are imported at start-up, so `cogumi --help` is instant;
each stage imports its heavy libraries when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any

from cogumi_ray.compress.pack_cli import add_cli as add_pack_cli
from cogumi_ray.errors import CogumiError


def _parse_set(items: list[str]) -> dict[str, Any]:
    """`--set train.max_steps=10` -> {"train.max_steps": 10} (values parsed as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise CogumiError(f"--set expects KEY=VALUE (e.g. train.max_steps=10), got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _add_common(p: argparse.ArgumentParser, config_required: bool = False,
                runs_stages: bool = True) -> None:
    if config_required:
        p.add_argument("config", help="pipeline config YAML (see configs/demo.yaml)")
    else:
        p.add_argument("--config", "-c", default=None, help="config YAML (default: embedded default)")
    p.add_argument("--name", default=None, help="run name (overrides run.name)")
    p.add_argument("--root", default=None, help="runs root dir or URI (overrides run.root)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=10 (repeatable)")
    if not runs_stages:
        return
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="re-run STAGE even if its config and inputs are unchanged (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted stage from its last checkpoint")


# The phase packages of cogumi_ray/ in the order of README.md's Layout section, and the commands
# that are not pipeline stages (a stage's package is read from its target).
PACKAGES = ("data", "models", "train", "generate", "judge", "failures", "distill", "compress",
            "modifiers", "route", "serve", "eval", "export", "tune", "reports")
OTHER_COMMANDS = {
    "compress": ("pack", "unpack"),
    "serve": ("serve",),
    "export": ("export hf",),
    "tune": ("compress --tune", "router train --tune"),
    "reports": ("report",),
}


def package_map() -> str:
    """`cogumi --help`'s epilog: each phase package with the commands that run it."""
    from cogumi_ray.pipeline import STAGES

    commands: dict[str, list[str]] = {p: [] for p in PACKAGES}
    for stage in STAGES:
        package = stage.target.partition(":")[0].split(".")[1]
        commands.setdefault(package, []).append(" ".join(stage.command))
    for package, extra in OTHER_COMMANDS.items():
        commands.setdefault(package, []).extend(extra)
    lines = ["packages (cogumi_ray/<package>/) and their commands, as in README.md's Layout:"]
    lines += [f"  {p + '/':<11} {', '.join(c)}" for p, c in commands.items() if c]
    lines.append(f"  {'pipeline.py':<11} demo, pipeline run, pipeline status")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from cogumi_ray.pipeline import STAGES

    parser = argparse.ArgumentParser(prog="cogumi", description=__doc__.splitlines()[0],
                                     epilog=package_map(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="the whole pipeline on the embedded default, then serve it and ask it",
        description="Run every stage on the embedded default (unchanged stages are skipped), "
        "write the report, start the Serve app, ask it one held-out task per domain and one "
        "dissatisfied follow-up with the openai SDK, and keep serving until Ctrl-C.")
    _add_common(demo)
    demo.add_argument("--no-serve", dest="serve", action="store_false",
                      help="stop the Serve app after the example queries instead of serving on")
    demo.add_argument("--port", type=int, default=None, help="HTTP port (default: serve.port)")
    demo.set_defaults(handler=_cmd_demo, only=None, until=None, host=None, backend=None)

    pipe = sub.add_parser("pipeline", help="run or inspect a pipeline")
    pipe_sub = pipe.add_subparsers(dest="pipe_cmd", required=True, metavar="ACTION")
    run = pipe_sub.add_parser("run", help="run every stage of CONFIG (unchanged stages are skipped)")
    _add_common(run, config_required=True)
    run.add_argument("--until", default=None, metavar="STAGE", help="stop after STAGE")
    run.add_argument("--only", action="extend", type=lambda v: [x for x in v.split(",") if x],
                     default=None, metavar="STAGES",
                     help="run only these stages (comma-separated or repeated, e.g. --only "
                     "distill,modifiers); their inputs come from the run's earlier stages")
    run.set_defaults(handler=_cmd_pipeline)
    show = pipe_sub.add_parser("status", help="print the run manifest's stage table")
    _add_common(show)
    show.set_defaults(handler=_cmd_status)

    groups: dict[str, argparse._SubParsersAction] = {}
    for stage in STAGES:
        *group_words, leaf = stage.command
        parent = sub
        for word in group_words:
            if word not in groups:
                g = sub.add_parser(word, help=f"{word} stages")
                groups[word] = g.add_subparsers(dest=f"{word}_cmd", required=True, metavar="ACTION")
            parent = groups[word]
        p = parent.add_parser(leaf, help=stage.help, description=stage.help)
        _add_common(p)
        for opt in stage.options:
            if opt.switch:  # a bare flag that sets its key to True (`compress --tune`)
                p.add_argument(opt.flag, dest=f"opt::{opt.key}", help=opt.help,
                               action="store_const", const=True, default=None)
                continue
            p.add_argument(opt.flag, dest=f"opt::{opt.key}", type=opt.type, help=opt.help,
                           metavar=opt.flag.lstrip("-").upper(),
                           action="append" if opt.many else "store", default=None)
        p.set_defaults(handler=_cmd_pipeline, only=[stage.name, *stage.then], until=None)
    hf = groups["export"].add_parser(
        "hf", help="a Hugging Face model-repo folder of the run (card with measured numbers)")
    _add_common(hf, runs_stages=False)
    hf.add_argument("--out", default=None, help="folder to write (default: <run>/hf)")
    hf.add_argument("--push", default=None, metavar="REPO", help="upload to this Hub repo id")
    hf.add_argument("--public", action="store_true", help="create the Hub repo public")
    hf.add_argument("--token-env", default="HF_TOKEN", help="env var holding the Hub token")
    hf.set_defaults(handler=_cmd_export_hf)
    add_pack_cli(sub)
    _add_serve(sub)
    rep = sub.add_parser("report", help="write runs/<name>/report.html and report.md of a run")
    _add_common(rep, runs_stages=False)
    rep.set_defaults(handler=_cmd_report)
    return parser


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve a finished run's models behind an OpenAI-compatible API (Ray Serve)",
        description="Serve the run's GGUF (the compress stage's if any, else export_gguf's) with "
        "its modifiers' LoRA GGUFs on llama.cpp, or the HF base with its PEFT adapters (--backend "
        "hf). The config's serve: section applies; what it sets explicitly wins over the run.")
    _add_common(p, runs_stages=False)
    p.add_argument("--host", default=None, help="address to listen on (default: serve.host)")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default: serve.port)")
    p.add_argument("--backend", choices=("llama_cpp", "hf"), default=None,
                   help="model server (default: serve.backend, llama_cpp)")
    p.add_argument("--no-block", dest="block", action="store_false",
                   help="return once deployed (the app lives as long as its Ray cluster: a local "
                   "Ray ends with this process)")
    p.add_argument("--ui", action="store_true",
                   help="also start the chat UI (Gradio, the `ui` extra) on --ui-port")
    p.add_argument("--ui-port", type=int, default=7860, help="chat UI port (default 7860)")
    p.set_defaults(handler=_cmd_serve)


def _load(args: argparse.Namespace):
    from cogumi_ray.config import load_config

    overrides = _parse_set(args.sets)
    for key, value in vars(args).items():
        if key.startswith("opt::") and value is not None:
            overrides[key[len("opt::"):]] = value
    if args.name:
        overrides["run.name"] = args.name
    if args.root:
        overrides["run.root"] = args.root
    return load_config(getattr(args, "config", None), overrides)


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from cogumi_ray.pipeline import run_pipeline

    cfg = _load(args)
    try:
        run_pipeline(cfg, only=args.only, until=args.until, force=args.force, resume=args.resume,
                     run_log=not args.verbose)
    except BaseException:
        # A failed stage still leaves a summary and a report that show the failure, but never
        # hides the error itself (e.g. when it failed before any stage wrote a manifest).
        with contextlib.suppress(CogumiError):
            _summarise(args, cfg.run_dir)
        raise
    _summarise(args, cfg.run_dir)
    return 0


def _summarise(args: argparse.Namespace, run_dir: str) -> None:
    from cogumi_ray.summary import print_summary

    print_summary(run_dir)
    if args.cmd in ("demo", "pipeline"):
        from cogumi_ray.reports import main as report_main

        report_main(run_dir)


def _cmd_export_hf(args: argparse.Namespace) -> int:
    from cogumi_ray import storage
    from cogumi_ray.export.hf_repo import export_hf_repo, push_to_hub

    cfg = _load(args)
    default = (storage.join(cfg.run_dir, "hf") if storage.is_local(cfg.run_dir)
               else f"{cfg.run.name}-hf")
    out = export_hf_repo(cfg.run_dir, args.out or default, config=cfg)
    print(f"hf repo folder: {out}")
    if args.push:
        push_to_hub(out, args.push, args.token_env, private=not args.public)
        print(f"pushed to {args.push}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from cogumi_ray.reports import main as report_main

    return report_main(_load(args).run_dir)


def _cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.ui and not args.block:
        raise CogumiError("--ui needs a blocking `cogumi serve`: the UI lives in this process "
                          "(drop --no-block, or run `python -m cogumi_ray.serve.ui` beside it)")
    return _serve_run(args, cfg, block=args.block, ui_port=args.ui_port if args.ui else None)


def _cmd_demo(args: argparse.Namespace) -> int:
    _cmd_pipeline(args)
    return _serve_run(args, _load(args), block=args.serve, ui_port=None, ask=True)


def _serve_run(args: argparse.Namespace, cfg: Any, *, block: bool, ui_port: int | None,
               ask: bool = False) -> int:
    """Deploy the run's models; then the demo's queries (`ask`), the chat UI (`ui_port`) and,
    with `block`, serve until Ctrl-C. Without `block` a demo stops the app; `cogumi serve
    --no-block` leaves it deployed."""
    import time

    from ray import serve

    from cogumi_ray import run_log
    from cogumi_ray.ray_session import init_ray
    from cogumi_ray.serve.app import start
    from cogumi_ray.serve.from_run import serve_config_for_run, usage_lines

    scfg = serve_config_for_run(cfg, config_path=args.config, backend=args.backend,
                                host=args.host, port=args.port)
    init_ray(cfg.ray)
    run_log.quiet_libraries()  # a demo's run log also takes Serve's controller and proxy lines
    ui = None
    keys = sorted(scfg.resolved_api_keys())
    try:
        url = start(scfg)
        print("\n".join(usage_lines(scfg, url)), flush=True)
        if ask:
            _ask_demo(cfg, url, keys[0] if keys else None)
        if not block:
            if ask:
                serve.shutdown()
            return 0  # `cogumi serve --no-block`: only a deployed app is left running
        if ui_port is not None:
            from cogumi_ray.serve.ui import launch_ui

            ui = launch_ui(url, keys[0] if keys else None, host=scfg.host, port=ui_port,
                           block=False)
            print(f"chat UI: {ui.local_url}", flush=True)
        print("\nserving; Ctrl-C to stop", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:  # also while deploying: the proxy may answer before run() returns
        print("stopping Serve ...", file=sys.stderr)
        if ui is not None:
            ui.close()
        serve.shutdown()  # replicas close their engines; the HTTP proxy frees the port
        return 0
    except BaseException:
        if ui is not None:
            ui.close()
        serve.shutdown()  # a failed deployment must not keep restarting replicas on a cluster
        raise


def _ask_demo(cfg: Any, url: str, key: str | None) -> None:
    from cogumi_ray.eval.stage import read_examples
    from cogumi_ray.reports import build_report
    from cogumi_ray.runs import RunContext
    from cogumi_ray.serve.client import ChatClient
    from cogumi_ray.serve.demo_queries import (
        answers_path,
        ask_demo_queries,
        pick_examples,
        table,
        write_answers,
    )

    for name in ("httpx", "httpx2"):  # one INFO line per request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    held_out = RunContext(cfg.run_dir).output(f"curate.{cfg.eval.suite_split}")
    examples = pick_examples(read_examples(held_out))
    print(f"\nasking {url} (model 'cogumi', the router decides) with the openai SDK:", flush=True)
    answers = ask_demo_queries(ChatClient(url, key), examples,
                               max_tokens=cfg.eval.params.max_new_tokens)
    print("\n".join("  " + line for line in table(answers)), flush=True)
    out = answers_path(cfg.run_dir)
    write_answers(answers, out)
    # The pipeline's report was written before these queries: again, now with its Serving section.
    html, _md = build_report(cfg.run_dir)
    print(f"answers: {out}\nreport: {html}", flush=True)


def _cmd_status(args: argparse.Namespace) -> int:
    from cogumi_ray.summary import print_summary

    print_summary(_load(args).run_dir)
    return 0


def _stage_failed(stage: str, e: Exception, argv: list[str]) -> str:
    """What failed, the command to run once the cause is fixed, and where the traceback is."""
    import shlex

    from cogumi_ray import run_log

    # A CogumiError's message already says what is wrong; anything else needs its type to be read.
    what = str(e) if isinstance(e, CogumiError) else f"{type(e).__name__}: {e}" if str(e) \
        else type(e).__name__
    log_path = run_log.active_path()
    where = (f"Log (with the traceback): {log_path}" if log_path
             else "The traceback is printed above.")
    return (f"stage {stage} failed: {what.rstrip('.')}.\n"
            f"Fix the cause, then re-run: cogumi {shlex.join(argv)}\n"
            f"(finished stages are skipped and {stage} runs again; --force STAGE re-runs a finished "
            f"one)\n{where}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted; re-run with --resume to continue", file=sys.stderr)
        return 130
    except Exception as e:
        from cogumi_ray.pipeline import failed_stage

        stage = failed_stage(e)
        if stage is not None:
            if args.verbose:  # no run log with -v: the traceback goes to the terminal instead
                import traceback

                traceback.print_exception(e)
            print(_stage_failed(stage, e, argv), file=sys.stderr)
            return 2 if isinstance(e, CogumiError) else 1
        if isinstance(e, CogumiError):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise  # a bug outside any stage: its traceback is the report


if __name__ == "__main__":
    sys.exit(main())
