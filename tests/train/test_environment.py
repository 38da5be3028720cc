"""What environment.json says about the CPU: parsed from /proc/cpuinfo on x86 and on arm."""

from __future__ import annotations

from kiln.runs.environment import KERNEL_ISA, parse_cpuinfo

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 avx fma avx2 avx512f avx512_vnni
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu
"""

ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes crc32 asimddp i8mm bf16
CPU implementer\t: 0x41
"""


def test_x86_model_and_the_first_cpus_flags() -> None:
    model, flags = parse_cpuinfo(X86)
    assert model == "AMD EPYC 7B13"
    assert [f for f in KERNEL_ISA if f in flags] == ["fma", "avx2", "avx512f", "avx512_vnni"]


def test_arm_features_without_a_model_name() -> None:
    model, flags = parse_cpuinfo(ARM)
    assert model is None
    assert [f for f in KERNEL_ISA if f in flags] == ["asimd", "asimddp", "i8mm", "bf16"]


def test_empty_text() -> None:
    assert parse_cpuinfo("") == (None, set())
