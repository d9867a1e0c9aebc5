"""conv_ext's benchmarks: every pass against torch on the public shape suite
and the layers of real networks (python -m benchmarks), scaling with batch
and image size (python -m benchmarks.scaling), training steps of five real
architectures and the per-call overhead (python -m benchmarks.e2e), and the
time of each of those architectures' convolutions, layer by layer
(python -m benchmarks.layers). Each verifies before it times, times side by
side with torch in one process, and records the machine it ran on."""
