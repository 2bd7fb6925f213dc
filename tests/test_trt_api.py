"""rmpe's TensorRT code against the real Python bindings of TensorRT 10.x and 11.x (rmpe.export.trt_api):
every name and call it makes exists in both, and the known 11.x removals are caught when used."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from rmpe.export import tensorrt_build, trt_api, trt_fake
from rmpe.export.trt_api import API, APIMismatch, CheckedObject, checked_module
from rmpe.export.trt_exercise import LineTrace, exercise, missed_lines, traced_files


@pytest.fixture(scope="module")
def apis() -> dict[str, dict]:
    """The API descriptions of the pinned 10.x and 11.x bindings wheels make install downloaded."""
    cache = trt_api.cache_dir()
    wheels = {major: sorted(cache.glob(trt_api._wheel_glob(spec))) for major, spec in trt_api.WHEELS.items()}
    if not all(wheels.values()):
        pytest.skip(f"no TensorRT bindings wheels in {cache}: make install (python -m rmpe.export.trt_api --fetch) "
                    "downloads them")
    described = all(w[-1].with_name(w[-1].stem + ".api.json").is_file() for w in wheels.values())
    if not described and not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        pytest.skip("describing the bindings needs a C compiler (stub libnvinfer libraries)")
    return {major: trt_api.describe(found[-1]) for major, found in wheels.items()}


def checked(description: dict):
    """A stand-in tensorrt of ``description``'s version seen through its real API, and its recorder."""
    return checked_module(description, trt_fake.make_tensorrt(description["version"], trt_fake.Calls()))


def test_the_wheels_are_the_pinned_versions(apis):
    assert apis["10"]["version"].startswith("10.") and apis["11"]["version"] == "11.4.0.106"
    for description in apis.values():
        assert {"Builder", "IBuilderConfig", "ICudaEngine", "IExecutionContext", "OnnxParser"} <= set(description["module"])


@pytest.mark.parametrize("major", ["10", "11"])
def test_every_use_exists_in_the_real_bindings_and_every_line_runs(apis, major):
    trace = LineTrace(traced_files())
    used, violations = exercise(apis[major], trace)
    assert violations == []
    assert all(not lines for lines in missed_lines(trace).values()), missed_lines(trace)
    assert {"IExecutionContext.execute_async_v3", "IExecutionContext.set_input_shape", "Builder.build_serialized_network",
            "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "IBuilderConfig.set_timing_cache",
            "ICudaEngine.get_tensor_profile_shape", "IExecutionContext.set_optimization_profile_async"} <= used


REMOVED_IN_11 = {
    "BuilderFlag.FP16": lambda trt: trt.BuilderFlag.FP16,
    "BuilderFlag.INT8": lambda trt: trt.BuilderFlag.INT8,
    "IInt8Calibrator": lambda trt: trt.IInt8Calibrator,
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": lambda trt: trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH,
}


@pytest.mark.parametrize("name", list(REMOVED_IN_11))
def test_known_removals_of_11_are_caught_and_exist_in_10(apis, name):
    trt11, recorder = checked(apis["11"])
    with pytest.raises(APIMismatch, match=f"TensorRT 11.4.0.106: .*{name.split('.')[-1]}"):
        REMOVED_IN_11[name](trt11)
    assert recorder.violations
    owner, _, member = name.partition(".")
    api10 = API(apis["10"])
    assert (member in api10.enums[owner]["members"]) if member else owner in api10.module


def test_execute_async_v2_is_caught_in_both(apis):
    for description in apis.values():
        api = API(description)
        _, recorder = checked(description)
        context = CheckedObject(api, recorder, "IExecutionContext", SimpleNamespace(execute_async_v3=lambda stream: True))
        with pytest.raises(APIMismatch, match="IExecutionContext.execute_async_v2 does not exist"):
            context.execute_async_v2
        assert context.execute_async_v3(0) is True


def test_a_deliberate_misuse_in_the_builder_fails_the_check_on_11_only(apis, monkeypatch):
    configure = tensorrt_build.configure

    def with_fp16_flag(trt, builder, config, options, precision):
        configure(trt, builder, config, options, precision)
        config.set_flag(trt.BuilderFlag.FP16)  # TensorRT 10's weak typing; gone in 11

    monkeypatch.setattr(tensorrt_build, "configure", with_fp16_flag)
    with pytest.raises(APIMismatch, match="BuilderFlag.FP16 does not exist"):
        exercise(apis["11"])
    assert exercise(apis["10"])[1] == []


def test_wrong_arguments_and_settings_match_no_signature(apis):
    trt, recorder = checked(apis["11"])
    config = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config()
    with pytest.raises(APIMismatch, match="set_memory_pool_limit.*matches no signature"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, "1GiB")
    with pytest.raises(APIMismatch, match="builder_optimization_level takes int"):
        config.builder_optimization_level = "3"
    with pytest.raises(APIMismatch, match="set_timing_cache.*matches no signature"):
        config.set_timing_cache(config.create_timing_cache(b""))  # ignore_mismatch has no default
    with pytest.raises(APIMismatch, match="tensorrt.execute does not exist"):
        trt.execute
    assert len(recorder.violations) == 4
