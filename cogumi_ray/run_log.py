"""The run's log file: everything Ray says goes there, the terminal keeps cogumi's stage lines.

A non-interactive pipeline run otherwise prints hundreds of Ray Data progress lines, Ray Train
controller chatter and every worker's stdout. With a run log attached, Ray's loggers write only to
the file (errors still reach the terminal), Ray Data's progress output is off, and the output Ray
forwards from workers to the driver is appended to the same file with its actor/task prefix.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_WORKER_HANDLER = "cogumi_run_log"
_ERRORS_CONSOLE = "cogumi_ray_errors"  # what a file-only logger still prints: ERROR and up
# Loggers whose records below ERROR go to the file only: Ray's, gguf's per-file writer lines and
# torch's (its own stderr handler prints tracing and deprecation notices).
FILE_ONLY = ("ray", "gguf", "torch")

_lock = threading.Lock()
_handler: logging.FileHandler | None = None
_env_set: list[str] = []  # variables attach() set (a user's own setting is left alone)


def _set_env(name: str, value: str) -> None:
    if name not in os.environ:
        os.environ[name] = value
        _env_set.append(name)


def active_path() -> str | None:
    """The attached run log's path, or None."""
    return _handler.baseFilename if _handler is not None else None


def attach(path: str) -> str:
    """Send every log record from INFO up (cogumi's and Ray's) to `path`, appending. Idempotent
    for one path; attaching another path replaces the first."""
    global _handler
    path = os.path.abspath(path)
    with _lock:
        if _handler is not None and _handler.baseFilename == path:
            return path
        detach()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        # INFO: Ray Data's DEBUG lines (every scheduler loop) stay in Ray's own session logs
        handler.setLevel(logging.INFO)
        # Model-loading progress bars of transformers/hub, in this process and in Ray's workers
        # (they inherit the environment of the Ray this process starts).
        _set_env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if not sys.stderr.isatty():  # llm-compressor's per-layer bars would print line by line
            _set_env("TQDM_DISABLE", "1")
        # llm-compressor logs with loguru to stdout (a line per pruned layer): errors only there,
        # everything in a JSON-lines file beside this one.
        _set_env("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
        _set_env("LLM_COMPRESSOR_LOG_FILE", os.path.join(os.path.dirname(path), "llmcompressor.log"))
        _hf_progress_off()
        logging.captureWarnings(True)  # warnings become records the console filter can sort
        root = logging.getLogger()
        root.addHandler(handler)
        for h in root.handlers:
            if _is_console(h):
                h.addFilter(_console_filter)
        _handler = handler
    quiet_libraries()
    return path


def detach() -> None:
    """Remove the run log (the terminal gets Ray's output back for loggers configured later)."""
    global _handler
    if _handler is None:
        return
    for logger in [logging.getLogger(), *_file_only_loggers()]:
        if _handler in logger.handlers:
            logger.removeHandler(_handler)
    for h in logging.getLogger().handlers:
        h.removeFilter(_console_filter)
    _restore_worker_output()
    logging.captureWarnings(False)
    while _env_set:
        os.environ.pop(_env_set.pop(), None)
    _handler.close()
    _handler = None


def quiet_libraries() -> None:
    """Move the FILE_ONLY loggers' console output and Ray's forwarded worker output into the run
    log. Call again after importing a Ray library or starting Ray: each configures its own
    loggers when it loads."""
    if _handler is None:
        return
    for logger in _file_only_loggers():
        if not logger.handlers and logger.propagate:
            continue  # reaches an ancestor that is handled here, or the root's filtered console
        for h in list(logger.handlers):
            if _is_console(h):
                logger.removeHandler(h)
        if _handler not in logger.handlers:
            logger.addHandler(_handler)
        if not any(h.get_name() == _ERRORS_CONSOLE for h in logger.handlers):
            errors = logging.StreamHandler()
            errors.setLevel(logging.ERROR)
            errors.set_name(_ERRORS_CONSOLE)
            logger.addHandler(errors)
    _quiet_data_progress()
    _forward_worker_output()


def _is_file_only(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in FILE_ONLY)


def _file_only_loggers() -> list[logging.Logger]:
    return [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)
            if _is_file_only(n)]


def _is_console(h: logging.Handler) -> bool:
    return isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) \
        and h.get_name() != _ERRORS_CONSOLE


def _console_filter(record: logging.LogRecord) -> bool:
    """Root console filter: FILE_ONLY records below ERROR that reach the root stay in the file."""
    file_only = _is_file_only(record.name)
    if record.name == "py.warnings":  # warnings raised in libraries' code (deprecations, notices)
        where = str(record.args[0] if record.args else record.msg).split(":", 1)[0]
        file_only = f"{os.sep}cogumi_ray{os.sep}" not in where
    return not file_only or record.levelno >= logging.ERROR


def _quiet_data_progress() -> None:
    """Ray Data logs a progress block per operator every few seconds when stdout is not a TTY."""
    if "ray.data" not in sys.modules:
        return
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def _forward_worker_output() -> None:
    """Replace Ray's printer of forwarded worker stdout/stderr with one that appends to the file.

    Ray exposes this only through its worker's stream dispatcher (no public switch besides
    dropping the output with `log_to_driver=False`); where that changes, output stays on the
    terminal and a debug line says so.
    """
    try:
        from ray._private import worker as ray_worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        log.debug("run log: this Ray has no worker stream dispatcher; worker output stays on the terminal")
        return
    if not ray_worker.global_worker.connected:
        return
    dispatcher.remove_handler("ray_print_logs")  # Ray adds it again on every ray.init
    if not any(name == _WORKER_HANDLER for name, _ in getattr(dispatcher, "handlers", [])):
        dispatcher.add_handler(_WORKER_HANDLER, _write_worker_lines)
    # The raylet's warnings (worker start-up, memory pressure) are printed through the same
    # function from another thread; the dispatcher holds its own reference to the original.
    if getattr(ray_worker, "print_to_stdstream", None) is not _write_worker_lines:
        global _ray_print_to_stdstream
        _ray_print_to_stdstream = ray_worker.print_to_stdstream
        ray_worker.print_to_stdstream = _write_worker_lines


_ray_print_to_stdstream: Any = None


def _write_worker_lines(data: dict[str, Any], ignore_prefix: bool = False) -> None:
    """Ray's `print_to_stdstream(data, ignore_prefix)` shape; lines keep their prefix here."""
    handler = _handler
    if handler is None or handler.stream is None:
        return
    lines = data.get("lines", [])
    if data.get("pid") == "autoscaler":  # its status table every few seconds: only the events
        from ray._private import worker as ray_worker

        lines = list(ray_worker.filter_autoscaler_events(lines))
        if not lines:
            return
    who = data.get("actor_name") or data.get("task_name") or ""
    ip = data.get("ip")
    where = f"pid={data.get('pid')}" + ("" if ip == data.get("localhost") else f", ip={ip}")
    prefix = f"({who} {where})" if who else f"({where})"
    text = "".join(f"{prefix} {line}\n" for line in lines)
    with _lock:
        handler.stream.write(text)
        handler.stream.flush()


def _restore_worker_output() -> None:
    try:
        import functools

        from ray._private import worker as ray_worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return
    if _ray_print_to_stdstream is not None:
        ray_worker.print_to_stdstream = _ray_print_to_stdstream
    if not any(name == _WORKER_HANDLER for name, _ in getattr(dispatcher, "handlers", [])):
        return
    dispatcher.remove_handler(_WORKER_HANDLER)
    if ray_worker.global_worker.connected:
        dispatcher.add_handler("ray_print_logs", functools.partial(
            ray_worker.print_to_stdstream,
            ignore_prefix=ray_worker._should_ignore_worker_log_prefix(ray_worker.global_worker)))


def _hf_progress_off() -> None:
    """For libraries already imported, which read the environment variable at import."""
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
