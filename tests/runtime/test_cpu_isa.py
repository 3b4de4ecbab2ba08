"""INT8 target detection from /proc/cpuinfo texts of the CPUs the targets are named for."""

import pytest

from edgevlm.runtime.cpu_isa import TARGETS, cpu_features, mismatch, target_from_cpuinfo

EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr pae mce cx8 sse sse2 ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm sse4a fsgsbase bmi1 avx2 smep bmi2 rdseed adx smap clflushopt clwb sha_ni xsaveopt
"""
CASCADE_LAKE_VNNI = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8280 CPU @ 2.70GHz
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni
"""
SAPPHIRE_RAPIDS_AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_1 sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx_vnni avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
"""
ALDER_LAKE_AVX_VNNI = """model name\t: 12th Gen Intel(R) Core(TM) i7-12700H
flags\t\t: fpu sse4_1 sse4_2 avx avx2 fma avx_vnni
"""
JETSON_ORIN = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd42
CPU revision\t: 1
"""
RASPBERRY_PI_3 = """processor\t: 0
Features\t: fp asimd evtstrm crc32 cpuid
CPU part\t: 0xd03
"""


@pytest.mark.parametrize("text, machine, target", [
    (EPYC_AVX2, "x86_64", "avx2"),
    (CASCADE_LAKE_VNNI, "x86_64", "avx512-vnni"),
    (ALDER_LAKE_AVX_VNNI, "x86_64", "avx512-vnni"),  # 256-bit vpdpbusd: no saturation either
    (SAPPHIRE_RAPIDS_AMX, "x86_64", "amx"),
    (JETSON_ORIN, "aarch64", "arm-dotprod"),
    (RASPBERRY_PI_3, "aarch64", "arm-dotprod"),  # no asimddp: same layout, NEON kernels
    ("", "x86_64", "avx2"),
    ("", "riscv64", None),
])
def test_targets_from_cpuinfo(text, machine, target):
    assert target_from_cpuinfo(text, machine) == target


def test_amx_needs_the_tile_flag_too():
    assert target_from_cpuinfo(SAPPHIRE_RAPIDS_AMX.replace(" amx_tile", ""), "x86_64") == "avx512-vnni"


def test_feature_labels_for_doctor():
    assert cpu_features(SAPPHIRE_RAPIDS_AMX) == ("Intel(R) Xeon(R) Platinum 8480+",
                                                 ["AVX2", "AVX-512", "AVX-512 VNNI", "AVX-VNNI", "AMX"])
    assert cpu_features(JETSON_ORIN) == ("", ["NEON", "ARM dotprod"])


def test_mismatch_explains_saturation_and_slowness():
    assert "saturate" in mismatch("avx512-vnni", "avx2") and "vpmaddubsw" in mismatch("amx", "avx2")
    assert "7-bit" in mismatch("avx2", "avx512-vnni")
    assert "saturate" in mismatch("arm-dotprod", "avx2")  # its dynamic graphs: u8 x s8, 8-bit
    assert "x86" in mismatch("arm-dotprod", "avx512-vnni")
    for target in TARGETS:
        assert mismatch(target, target) is None and mismatch(target, None) is None
    assert mismatch("amx", "avx512-vnni") is None and mismatch("avx512-vnni", "amx") is None  # one layout


@pytest.fixture()
def fresh_target(monkeypatch):
    """this_cpu_target is cached per process: read again, and again after the test."""
    from edgevlm.runtime import cpu_isa

    cpu_isa.this_cpu_target.cache_clear()
    yield cpu_isa
    monkeypatch.delenv(cpu_isa.CPU_TARGET_ENV, raising=False)
    cpu_isa.this_cpu_target.cache_clear()


def test_the_environment_can_name_the_cpu_target(fresh_target, monkeypatch):
    monkeypatch.setenv("EDGEVLM_CPU_TARGET", "arm-dotprod")
    assert fresh_target.this_cpu_target() == "arm-dotprod"


def test_an_unknown_cpu_target_in_the_environment_is_one_clear_line(fresh_target, monkeypatch):
    from edgevlm.errors import EdgeVLMError

    monkeypatch.setenv("EDGEVLM_CPU_TARGET", "avx10")
    with pytest.raises(EdgeVLMError) as refused:
        fresh_target.this_cpu_target()
    assert str(refused.value) == ("EDGEVLM_CPU_TARGET='avx10' is not a CPU target; set one of avx2, avx512-vnni, amx, "
                                  "arm-dotprod, or unset it to detect this CPU's")


def test_info_names_the_variant_the_environment_picks(tmp_path):
    """The shipped engine on a CPU told to be arm-dotprod runs its ARM variant; told avx2, the top engine."""
    import os
    import subprocess
    import sys

    from edgevlm.paths import default_engine_dir

    for target, expected in (("arm-dotprod", os.path.join(default_engine_dir(), "variants", "arm-dotprod")),
                             ("avx2", default_engine_dir())):
        env = {**os.environ, "EDGEVLM_CPU_TARGET": target, "EDGEVLM_CACHE_DIR": str(tmp_path)}
        out = subprocess.run([sys.executable, "-m", "edgevlm.cli.main", "info"], capture_output=True, text=True,
                             env=env, check=True).stdout
        assert f"engine_for_this_cpu: {expected}\n" in out
        assert f"cpu_target: {target}\n" in out


def test_a_told_target_never_decides_the_arithmetic(fresh_target, monkeypatch, caplog):
    """EDGEVLM_CPU_TARGET picks engines; whether a gate or a memory needs the emulation is the
    CPU's own arithmetic: told avx512-vnni on an AVX2 CPU, a VNNI engine is still emulated."""
    import logging

    from edgevlm.calibration import int8_emulation

    monkeypatch.setattr(fresh_target, "detected_cpu_target", lambda: "avx2")
    monkeypatch.setattr(int8_emulation, "detected_cpu_target", lambda: "avx2")
    monkeypatch.setenv("EDGEVLM_CPU_TARGET", "avx512-vnni")
    with caplog.at_level(logging.WARNING):
        assert fresh_target.this_cpu_target() == "avx512-vnni"
    assert any("EDGEVLM_CPU_TARGET=avx512-vnni, but this CPU is avx2" in r.getMessage() and "saturate" in r.getMessage()
               for r in caplog.records)
    assert int8_emulation.emulation_needed("avx512-vnni")
    assert not int8_emulation.emulation_needed("avx2")


def test_doctor_says_where_the_target_comes_from(fresh_target, monkeypatch):
    from edgevlm.runtime import doctor

    monkeypatch.setattr(doctor, "detected_cpu_target", lambda: "avx2")
    monkeypatch.setenv("EDGEVLM_CPU_TARGET", "arm-dotprod")
    told = doctor.check_cpu()
    assert told.label == "WARN" and "INT8 target arm-dotprod from EDGEVLM_CPU_TARGET (detected: avx2)" in told.detail
    assert told.fix.startswith("unset EDGEVLM_CPU_TARGET")
    fresh_target.this_cpu_target.cache_clear()
    monkeypatch.setenv("EDGEVLM_CPU_TARGET", "bogus")
    wrong = doctor.check_cpu()  # one failed line, not a doctor that stops
    assert wrong.ok is False and wrong.needed and "EDGEVLM_CPU_TARGET='bogus' is not a CPU target" in wrong.detail

