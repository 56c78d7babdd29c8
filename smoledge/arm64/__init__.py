"""The arm64 correctness lane: smoledge's ARM artifacts run on arm64 (qemu-user on an x86 machine) and are
compared with x86. Entry point: `smoledge arm64-check` (smoledge.arm64.check)."""
