"""`runner-report PATH...` (`__main__`, also `python -m runner.report`): runs read back from their
folders (`results`), statistics across seeds (`aggregate`), figures (`figures`, `conv`), the HTML
page and its tables (`html`, `verdicts`), verdicts across seeds (`fit`), claims beside their runs
(`claims`), numbers to the precision their interval supports (`text`), the report folder (`files`).

Reads files and runs nothing: imports runner.common and runner.run.provenance only."""
