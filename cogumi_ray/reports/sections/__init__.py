"""One module per report section; each exposes `section(run) -> Section | None` (None: the
section does not apply to this run at all, e.g. no router stage yet)."""
