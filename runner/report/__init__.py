"""`runner-report PATH...` (`__main__`, also `python -m runner.report`): runs read back from their
folders (`results`), group names and --label (`names`), statistics across seeds (`aggregate`),
steps to a threshold with censored runs (`targets`), figures (`figures`, `conv`, `stability`), the
HTML page and its tables (`html`, `verdicts`), verdicts across seeds (`fit`), claims beside their
runs (`claims`), numbers to the precision their interval supports (`text`), the report folder (`files`).

Reads files and runs nothing: imports runner.common and runner.run.provenance only."""
