"""One report base for every kind of run: the same title / table / notes layout, JSON and exit code."""

from __future__ import annotations

import json

from bufsync.report import JobResult, MappingReport, PortalRun, Report, RunReport


def test_a_sync_report_prints_a_table_and_its_row_errors() -> None:
    users = MappingReport("users", source_rows=12)
    users.add("create", 10)
    users.add("reject", 2)
    users.errors = [{"key": f"P{i}", "status": "error", "reason": "нет почты (missingemail)"} for i in range(3)]
    report = RunReport(run_id=7, outcome="rejected", mappings=[users, MappingReport("courses", note="not run: x")])
    lines = report.render(errors_shown=2).splitlines()
    assert lines[0] == "run 7: rejected in 0.0 s, 0 Moodle calls"
    assert lines[1].split()[:4] == ["mapping", "rows", "created", "adopted"]
    assert lines[2].split()[:4] == ["users", "12", "10", "0"] and lines[2].split()[10] == "2"
    assert "  users [P1] error: нет почты (missingemail)" in lines
    assert "  ... 1 more in users (sync_error in the buffer)" in lines and "courses: not run: x" in lines
    assert report.exit_code == 1
    assert report.stored_counts()["users"]["created"] == 10
    assert json.loads(report.to_json())["mappings"][0]["counts"]["rejected"] == 2


def test_portal_runs_and_jobs_share_the_shape() -> None:
    dispatch = PortalRun(kind="dispatch", portal="scos", run_id=3, counts={"claimed": 2, "done": 1, "retried": 0,
                                                                           "dead": 1}, outcome="rejected")
    assert dispatch.render() == "dispatch scos: claimed=2 done=1 retried=0 dead=1 in 0.0s (run 3)"
    assert dispatch.exit_code == 1 and dispatch.stored_counts() == dispatch.counts
    scenarios = PortalRun(kind="scos", run_id=4, counts={"published": 1}, problems=["Курс «X»: нет дат"])
    assert scenarios.render().splitlines() == ["scos: ok in 0.0s (run 4) published=1", "  Курс «X»: нет дат"]
    job = JobResult(job="nightly", status="held", outcome="held", detail="another process runs this job now")
    assert job.render() == "job nightly: held — another process runs this job now" and job.exit_code == 0
    refused = RunReport(run_id=1, outcome="refused", refused="users: 5 of 6 linked records would be suspended")
    assert refused.render().splitlines()[-1] == "REFUSED: users: 5 of 6 linked records would be suspended"
    for report in (dispatch, scenarios, job, refused):
        assert isinstance(report, Report) and json.loads(report.to_json())["kind"] == report.kind


def test_a_file_report_counts_the_bad_rows_it_did_not_show() -> None:
    """Problems are listed one a line, a bad row may have several: what is left unsaid is counted in rows, never
    negative."""
    from bufsync.report import FileRun
    two_each = [{"line": str(line), "column": column, "value": "", "reason": "x (required)"}
                for line in range(2, 17) for column in ("a", "b")]  # 15 bad rows, 30 problems
    report = FileRun(counts={"rows": 20, "rejected": 15}, problems=two_each, outcome="rejected")
    notes = report.notes(20)
    assert notes[:20] == [f"  line {p['line']}, {p['column']}: {p['reason']}" for p in two_each[:20]]
    assert notes[20] == "  ... 5 more bad rows"  # rows 12..16 (the first 20 problems are rows 2..11)
    one_row = FileRun(counts={"rows": 1, "rejected": 1}, problems=[
        {"line": "2", "column": f"c{i}", "value": "", "reason": "r"} for i in range(25)], outcome="rejected")
    assert one_row.notes(20)[20] == "  ... 5 more problems in the rows above"
