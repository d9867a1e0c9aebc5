"""conv_ext's benchmarks: every pass against torch on the public shape suite
(python -m benchmarks), scaling with batch and image size
(python -m benchmarks.scaling), and a ResNet-18-shaped training step
(python -m benchmarks.e2e). Each verifies before it times, times side by side
with torch in one process, and measures the machine's limits in the same run."""
