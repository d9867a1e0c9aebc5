"""One benchmark result: a shape, pass, device and dtype, ours against torch,
with the check that preceded the timing and the setup it ran on."""
from dataclasses import asdict, dataclass


@dataclass
class Record:
    # what ran
    shape: str
    dims: str
    device: str
    dtype: str
    layout: str
    pass_name: str
    # times (median ms) and what they mean; None where not timed
    ours_ms: float | None
    torch_ms: float | None
    speedup: float | None  # torch_ms / ours_ms: above 1, ours is faster
    flops: int
    min_bytes: int
    ours_tflops: float | None
    torch_tflops: float | None
    limit_ms: float  # time at the machine's limit (roofline)
    limit_pct: float | None  # 100 * limit_ms / ours_ms
    torch_limit_pct: float | None
    # the check before timing
    rel_err: float | None  # max |ours - torch| / max |torch|
    tolerance: float
    ok: bool
    error: str | None
    # the limits measured in this run
    rate_tflops: float
    rate_source: str
    bandwidth_gbs: float
    # the setup
    card: str
    driver: str | None
    torch_version: str
    commit: str
    date: str
    threads: int
    load_avg: float | None  # 1-minute load average when the run started
    command: str
    isa: str | None = None  # CPU runs: the instruction sets of ours and torch (machine.isa)

    def as_dict(self):
        """The record as JSON writes it; the pass is under the key 'pass'."""
        d = asdict(self)
        d["pass"] = d.pop("pass_name")
        return d

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d["pass_name"] = d.pop("pass")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# Keys every JSON record has (the report and the tests rely on them).
REQUIRED = ("shape", "device", "dtype", "pass", "ours_ms", "torch_ms", "speedup", "ours_tflops",
            "limit_pct", "rel_err", "ok", "card", "torch_version", "commit")
