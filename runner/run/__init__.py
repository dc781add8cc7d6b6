"""One run, start to finish (`job`): every object built from config (`build`), the step loop
(`loop`), schedules (`sched`), the metric files (`metrics`), what the terminal shows (`progress`,
`recorder`), how a run ends (`outcome`), what it records about itself (`provenance`), a full disk
(`disk`) and skipping a config that already finished (`identity`).

May import runner.task, runner.resume, runner.tracking, runner.validation and runner.common;
never sweep, report or claims."""
