"""API check of rmpe's TensorRT code against the real Python bindings of TensorRT 10.x and 11.x,
without TensorRT's libraries or a GPU (``rmpe-export --trt-api-check``).

NVIDIA's bindings wheels (``tensorrt-cu12-bindings``, ``tensorrt_cu13_bindings``, about 1.3 MB each)
hold the pybind11 module ``tensorrt.so`` with every class, method, property, enum member and
signature; it fails to import only because ``libnvinfer`` and its siblings are missing. Both wheels
name their module ``tensorrt_bindings``, so they cannot share one environment; instead:

1. :func:`fetch` downloads the pinned wheels with ``pip download --no-deps`` into a cache folder
   (``make install`` does it: ``python -m rmpe.export.trt_api --fetch``);
2. :func:`describe` compiles stub libraries under the names the module links against (a C
   compiler, once; each stub function returns 0), imports the module in a subprocess with them
   loaded and writes every class, enum member, property (type, writable) and method signature
   (pybind11's, overloads included) to JSON beside the wheel;
3. :func:`checked_module` wraps the stand-in ``tensorrt`` of rmpe.export.trt_fake so that every
   attribute rmpe's code reaches is looked up in that description and every call is bound to a real
   signature: a name the version lacks, or arguments no overload takes, raise :class:`APIMismatch`
   and are recorded;
4. rmpe.export.trt_exercise runs rmpe's engine builder and runner through it, every line of
   export/tensorrt_build.py and runtime/tensorrt_backend.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

WHEELS = {"10": "tensorrt-cu12-bindings==10.16.1.11", "11": "tensorrt_cu13_bindings==11.4.0.106"}
PREFIXES = ("tensorrt_bindings.tensorrt.", "tensorrt.tensorrt.", "tensorrt_bindings.", "tensorrt.")
BUFFER_CLASSES = {"IHostMemory"}  # documented to support the buffer protocol (bytes(...), memoryview(...))
KNOWN_REMOVED_IN_11 = ("BuilderFlag.FP16", "BuilderFlag.INT8", "IInt8Calibrator", "IExecutionContext.execute_async_v2",
                       "NetworkDefinitionCreationFlag.EXPLICIT_BATCH")


def cache_dir() -> Path:
    """Where the wheels and their descriptions are kept: $RMPE_TRT_BINDINGS, else $XDG_CACHE_HOME/rmpe/trt-bindings."""
    if os.environ.get("RMPE_TRT_BINDINGS"):
        return Path(os.environ["RMPE_TRT_BINDINGS"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rmpe" / "trt-bindings"


def _wheel_glob(spec: str) -> str:
    name, version = spec.split("==")
    return f"{name.replace('-', '_')}-{version}-*.whl"


def fetch(cache: Path | None = None) -> dict[str, Path]:
    """The bindings wheel of each major version, downloaded with pip into ``cache`` when not there yet."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for major, spec in WHEELS.items():
        wheels = sorted(cache.glob(_wheel_glob(spec)))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--dest", str(cache), spec], check=True)
            wheels = sorted(cache.glob(_wheel_glob(spec)))
        if not wheels:
            raise RuntimeError(f"pip downloaded no wheel for {spec} into {cache}")
        found[major] = wheels[-1]
    return found


DUMP = r'''
import ctypes, inspect, json, sys
for lib in sys.argv[2:]:
    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
sys.path.insert(0, sys.argv[1])
import tensorrt_bindings as trt

def doc_lines(obj):
    return [l.strip() for l in (getattr(obj, "__doc__", None) or "").splitlines()]

def signatures(obj):
    lines = doc_lines(obj)
    if not lines:
        return []
    if len(lines) > 1 and lines[1] == "Overloaded function.":
        return [l.split(". ", 1)[1] for l in lines if l[:1].isdigit() and ". " in l and "(" in l]
    return [lines[0]] if "(" in lines[0] else []

def describe_enum(cls):
    return {"kind": "enum", "members": list(cls.__members__), "dunders": [n for n in dir(cls) if n.startswith("__")]}

def describe_class(cls):
    members = {}
    for name in dir(cls):
        value = inspect.getattr_static(cls, name)
        if isinstance(value, property):
            doc = doc_lines(value.fget) if value.fget else []
            ret = doc[0].split("->", 1)[1].strip() if doc and "->" in doc[0] else ""
            members[name] = {"kind": "property", "type": ret, "writable": value.fset is not None}
        elif isinstance(value, type) and hasattr(value, "__members__"):
            members[name] = describe_enum(value) | {"qualname": value.__qualname__}
        elif callable(value) or isinstance(value, (staticmethod, classmethod)):
            target = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            members[name] = {"kind": "method", "signatures": signatures(target)}
        else:
            members[name] = {"kind": "value", "type": type(value).__qualname__}
    return {"kind": "class", "mro": [c.__name__ for c in cls.__mro__], "members": members}

module = {}
for name in dir(trt):
    value = getattr(trt, name)
    if isinstance(value, type) and hasattr(value, "__members__"):
        module[name] = describe_enum(value)
    elif isinstance(value, type):
        module[name] = describe_class(value)
    elif inspect.isfunction(value):
        module[name] = {"kind": "pyfunction", "params": list(inspect.signature(value).parameters)}
    elif callable(value):
        module[name] = {"kind": "function", "signatures": signatures(value)}
    else:
        module[name] = {"kind": "value", "type": type(value).__qualname__}
json.dump({"version": trt.__version__, "module": module}, sys.stdout)
'''


def _compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise RuntimeError("the API check needs a C compiler (cc, gcc or clang) to make stub libnvinfer libraries")


def _stubs(folder: Path, libraries: set[str], symbols: set[str]) -> list[Path]:
    """Shared libraries named ``libraries`` that define each of ``symbols`` as a function returning 0."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "stubs.c"
    source.write_text("".join(f"long {s}(void) {{ return 0; }}\n" for s in sorted(symbols)) or "int rmpe_stub;\n")
    paths = []
    for lib in sorted(libraries):
        path = folder / lib
        subprocess.run([_compiler(), "-shared", "-fPIC", "-o", str(path), f"-Wl,-soname,{lib}", str(source)], check=True)
        paths.append(path)
    return paths


def describe(wheel: Path, cache: Path | None = None) -> dict:
    """The API of the bindings in ``wheel`` (cached as JSON beside it): stub libraries are added for each
    library and symbol the module asks for until it imports."""
    cache = cache or wheel.parent
    target = cache / (wheel.stem + ".api.json")
    if target.is_file():
        return json.loads(target.read_text())
    unpacked = cache / wheel.stem
    if not (unpacked / "tensorrt_bindings").is_dir():
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
    libraries: set[str] = set()
    symbols: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="rmpe-trt-stubs-") as tmp:
        for _ in range(64):
            stubs = _stubs(Path(tmp), libraries, symbols) if libraries else []
            done = subprocess.run([sys.executable, "-c", DUMP, str(unpacked), *map(str, stubs)],
                                  capture_output=True, text=True, env={**os.environ, "LD_LIBRARY_PATH": tmp})
            if done.returncode == 0:
                api = json.loads(done.stdout)
                target.write_text(json.dumps(api))
                return api
            missing_lib = re.search(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object", done.stderr)
            missing_symbol = re.search(r"undefined symbol: (\w+)", done.stderr)
            if missing_lib:
                libraries.add(missing_lib.group(1))
            elif missing_symbol and missing_symbol.group(1) not in symbols:
                symbols.add(missing_symbol.group(1))
            else:
                raise RuntimeError(f"{wheel.name}: the bindings do not import with stub libraries: "
                                   f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    raise RuntimeError(f"{wheel.name}: still missing libraries or symbols after 64 tries")


def clean_type(text: str) -> str:
    """``tensorrt_bindings.tensorrt.ILogger.Severity`` → ``ILogger.Severity``."""
    text = text.strip()
    for prefix in PREFIXES:
        text = text.replace(prefix, "")
    return text


def split_top(text: str) -> list[str]:
    """Split at commas outside brackets, parentheses and angle brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(<":
            depth += 1
        elif ch in "])>":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    tail = text[start:]
    return parts + [tail] if tail.strip() else parts


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    optional: bool


@dataclass(frozen=True)
class Signature:
    """One pybind11 overload: its parameters (``self`` left out for methods) and return type."""

    text: str
    params: tuple[Param, ...]
    returns: str

    @classmethod
    def parse(cls, text: str, method: bool) -> "Signature":
        head, _, returns = text.rpartition(") -> ")
        inner = head[head.index("(") + 1:]
        params = []
        for part in split_top(inner):
            name, _, rest = part.strip().partition(":")
            kind, _, default = rest.partition("=")
            params.append(Param(name.strip(), clean_type(kind), bool(default.strip())))
        if method and params and params[0].name in ("self", "arg0"):
            params = params[1:]
        return cls(text, tuple(params), clean_type(returns))


class APIMismatch(AttributeError, TypeError):
    """A use of TensorRT the real bindings of the version under check do not have."""


@dataclass
class Recorder:
    """What the code under check used, and what it used wrongly."""

    version: str
    used: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)

    def fail(self, message: str) -> APIMismatch:
        self.violations.append(message)
        return APIMismatch(f"TensorRT {self.version}: {message}")


class API:
    """Lookups in a :func:`describe` result."""

    def __init__(self, description: dict) -> None:
        self.version = description["version"]
        self.module = description["module"]
        self.enums = {name: entry for name, entry in self.module.items() if entry["kind"] == "enum"}
        for cls_name, entry in self.module.items():
            for member in entry.get("members", {}).values() if entry["kind"] == "class" else ():
                if member["kind"] == "enum":
                    self.enums[member["qualname"]] = member

    def cls(self, name: str) -> dict | None:
        entry = self.module.get(name)
        return entry if entry and entry["kind"] == "class" else None

    def is_a(self, cls: str, wanted: str) -> bool:
        entry = self.cls(cls)
        return cls == wanted or bool(entry and wanted in entry["mro"])


def unwrap(value: Any) -> Any:
    if isinstance(value, (CheckedObject, CheckedValue)):
        return value._raw
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(v) for v in value)
    return value


def accepts(api: API, kind: str, value: Any) -> bool:
    """Whether pybind11 would convert ``value`` to a parameter declared ``kind``."""
    kind = clean_type(kind)
    if kind.startswith("typing.Optional[") or "| None" in kind:
        inner = kind[len("typing.Optional["):-1] if kind.startswith("typing.Optional[") else kind.replace("| None", "")
        return value is None or accepts(api, inner, value)
    if isinstance(value, CheckedValue):
        return value._enum == kind
    if isinstance(value, CheckedObject):
        return api.is_a(value._cls, kind)
    base = kind.split("[", 1)[0]
    if kind in ("object", "typing.Any") or "::" in kind:
        return True
    if kind in ("int", "typing.SupportsInt"):
        return isinstance(value, (int, np.integer)) and not isinstance(value, CheckedValue)
    if kind in ("float", "typing.SupportsFloat"):
        return isinstance(value, (int, float, np.integer, np.floating))
    if kind == "bool":
        return isinstance(value, (bool, np.bool_))
    if kind == "str":
        return isinstance(value, str)
    if kind in ("typing_extensions.Buffer", "collections.abc.Buffer", "buffer", "bytes"):
        return isinstance(value, (bytes, bytearray, memoryview, np.ndarray))
    if kind in ("tuple", "list"):
        return isinstance(value, {"tuple": tuple, "list": list}[kind])
    if base in ("collections.abc.Sequence", "list", "typing.List", "typing.Sequence"):
        return isinstance(value, (list, tuple))
    if api.is_a(kind, "Dims") or kind.startswith("Dims"):
        return isinstance(value, (tuple, list)) and all(isinstance(v, (int, np.integer)) for v in value)
    return False


def wrap(api: API, recorder: Recorder, kind: str, value: Any) -> Any:
    """A result declared ``kind``, wrapped when it is a TensorRT class or enum value."""
    if value is None:
        return None
    kind = clean_type(kind)
    if kind.startswith("list[") and isinstance(value, list):
        return [wrap(api, recorder, kind[5:-1], v) for v in value]
    if kind in api.enums:
        return CheckedValue(api, recorder, kind, value)
    if api.cls(kind):
        return CheckedObject(api, recorder, kind, value)
    return value


def call(api: API, recorder: Recorder, label: str, signatures: list[str], method: bool, target: Any,
         args: tuple, kwargs: dict) -> Any:
    """Bind ``args``/``kwargs`` to one of the real ``signatures``, then call the fake ``target``."""
    for text in signatures:
        sig = Signature.parse(text, method)
        names = [p.name for p in sig.params]
        if len(args) > len(names) or any(k not in names for k in kwargs):
            continue
        bound = dict(zip(names, args))
        if any(k in bound for k in kwargs):
            continue
        bound.update(kwargs)
        if any(p.name not in bound and not p.optional for p in sig.params):
            continue
        if all(accepts(api, p.type, bound[p.name]) for p in sig.params if p.name in bound):
            recorder.used.add(label)
            return wrap(api, recorder, sig.returns, target(*unwrap(args), **unwrap(kwargs)))
    shown = [type(a).__name__ if not isinstance(a, (CheckedObject, CheckedValue)) else repr(a) for a in args]
    raise recorder.fail(f"{label}({', '.join(shown)}{', ' if kwargs else ''}{', '.join(kwargs)}) matches no "
                        f"signature: {' | '.join(signatures) or 'none'}")


class CheckedValue:
    """A TensorRT enum member (``trt.BuilderFlag.TF32``, ``trt.Logger.WARNING``)."""

    def __init__(self, api: API, recorder: Recorder, enum: str, raw: Any) -> None:
        self._api, self._recorder, self._enum, self._raw = api, recorder, enum, raw

    def __int__(self) -> int:
        if "__int__" not in self._api.enums[self._enum]["dunders"]:
            raise self._recorder.fail(f"int({self._enum}) is not defined")
        return int(self._raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CheckedValue) and other._enum == self._enum and other._raw == self._raw

    def __hash__(self) -> int:
        return hash((self._enum, int(self._raw)))

    def __repr__(self) -> str:
        return f"{self._enum}.{getattr(self._raw, 'name', self._raw)}"


class CheckedEnum:
    """A TensorRT enum type: members looked up in the real enum."""

    def __init__(self, api: API, recorder: Recorder, name: str, raw: Any) -> None:
        self._api, self._recorder, self._name, self._raw = api, recorder, name, raw

    def __getattr__(self, member: str) -> CheckedValue:
        if member not in self._api.enums[self._name]["members"]:
            raise self._recorder.fail(f"{self._name}.{member} does not exist")
        self._recorder.used.add(f"{self._name}.{member}")
        return CheckedValue(self._api, self._recorder, self._name, getattr(self._raw, member))


class CheckedObject:
    """An instance (or, with ``is_type``, the class) of a TensorRT class: attributes, properties and
    methods checked against the real class."""

    def __init__(self, api: API, recorder: Recorder, cls: str, raw: Any, is_type: bool = False) -> None:
        object.__setattr__(self, "_api", api)
        object.__setattr__(self, "_recorder", recorder)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_is_type", is_type)

    def _member(self, name: str) -> dict:
        member = self._api.cls(self._cls)["members"].get(name)
        if member is None:
            raise self._recorder.fail(f"{self._cls}.{name} does not exist")
        return member

    def __getattr__(self, name: str) -> Any:
        member = self._member(name)
        label = f"{self._cls}.{name}"
        if member["kind"] == "enum":
            return CheckedEnum(self._api, self._recorder, member["qualname"], getattr(self._raw, name))
        if member["kind"] == "value":
            self._recorder.used.add(label)
            return wrap(self._api, self._recorder, member["type"], getattr(self._raw, name))
        if member["kind"] == "property":
            if self._is_type:
                raise self._recorder.fail(f"{label} is a property of instances")
            self._recorder.used.add(label)
            return wrap(self._api, self._recorder, member["type"], getattr(self._raw, name))
        target = getattr(self._raw, name)
        return lambda *args, **kwargs: call(self._api, self._recorder, label, member["signatures"], True, target, args, kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        member = self._member(name)
        if member["kind"] != "property" or not member["writable"]:
            raise self._recorder.fail(f"{self._cls}.{name} cannot be set")
        if member["type"] and not accepts(self._api, member["type"], value):
            raise self._recorder.fail(f"{self._cls}.{name} takes {member['type']}, not {value!r}")
        self._recorder.used.add(f"{self._cls}.{name} =")
        setattr(self._raw, name, unwrap(value))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self._is_type:
            raise self._recorder.fail(f"a {self._cls} is not callable")
        init = self._member("__init__")
        return wrap(self._api, self._recorder, self._cls,
                    call(self._api, self._recorder, f"{self._cls}()", init["signatures"], True, self._raw, args, kwargs))

    def _dunder(self, name: str) -> None:
        if name not in self._api.cls(self._cls)["members"] and not (name == "__bytes__" and self._cls in BUFFER_CLASSES):
            raise self._recorder.fail(f"{self._cls} has no {name}")

    def __iter__(self) -> Iterator[Any]:
        if "__iter__" not in self._api.cls(self._cls)["members"]:
            self._dunder("__getitem__")
        return iter(self._raw)

    def __len__(self) -> int:
        self._dunder("__len__")
        return len(self._raw)

    def __bytes__(self) -> bytes:
        self._dunder("__bytes__")
        return bytes(self._raw)

    def __repr__(self) -> str:
        return f"<checked {self._cls}>"


class CheckedModule:
    """The ``tensorrt`` module as rmpe's code sees it under the check: names from the real module."""

    def __init__(self, api: API, recorder: Recorder, fake: Any) -> None:
        self._api, self._recorder, self._fake = api, recorder, fake
        self.__version__ = api.version

    def __getattr__(self, name: str) -> Any:
        entry = self._api.module.get(name)
        if entry is None:
            raise self._recorder.fail(f"tensorrt.{name} does not exist")
        raw = getattr(self._fake, name)
        if entry["kind"] == "enum":
            return CheckedEnum(self._api, self._recorder, name, raw)
        if entry["kind"] == "class":
            return CheckedObject(self._api, self._recorder, name, raw, is_type=True)
        if entry["kind"] == "pyfunction":
            def checked(*args: Any, **kwargs: Any) -> Any:
                if len(args) + len(kwargs) > len(entry["params"]) or any(k not in entry["params"] for k in kwargs):
                    raise self._recorder.fail(f"tensorrt.{name} takes ({', '.join(entry['params'])})")
                self._recorder.used.add(f"tensorrt.{name}")
                return raw(*unwrap(args), **unwrap(kwargs))
            return checked
        if entry["kind"] == "function":
            return lambda *args, **kwargs: call(self._api, self._recorder, f"tensorrt.{name}", entry["signatures"],
                                                False, raw, args, kwargs)
        self._recorder.used.add(f"tensorrt.{name}")
        return wrap(self._api, self._recorder, entry["type"], raw)


def checked_module(description: dict, fake: Any) -> tuple[CheckedModule, Recorder]:
    """``fake`` seen through the real API ``description``, and the recorder of what was used."""
    api = API(description)
    recorder = Recorder(api.version)
    return CheckedModule(api, recorder, fake), recorder


def load_apis(cache: Path | None = None) -> dict[str, dict]:
    """The API description of each pinned bindings wheel (fetched and described when needed)."""
    return {major: describe(wheel, cache) for major, wheel in fetch(cache).items()}


@contextmanager
def patched_modules(modules: dict[str, Any]) -> Iterator[None]:
    """``sys.modules`` entries replaced for the duration."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def main(argv: list[str] | None = None) -> int:
    """Check both versions (``rmpe-export --trt-api-check``), or with ``--fetch`` only download the wheels."""
    parser = argparse.ArgumentParser(prog="python -m rmpe.export.trt_api", description=__doc__.splitlines()[0])
    parser.add_argument("--fetch", action="store_true", help="only download the bindings wheels (make install)")
    parser.add_argument("--cache", type=Path, help=f"wheel cache (default: $RMPE_TRT_BINDINGS or {cache_dir()})")
    args = parser.parse_args(argv)
    try:
        if args.fetch:
            for wheel in fetch(args.cache).values():
                print(f"TensorRT bindings: {wheel}")
            return 0
        apis = load_apis(args.cache)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"rmpe-export --trt-api-check: {exc}", file=sys.stderr)
        return 2
    from rmpe.export.trt_exercise import exercise

    status = 0
    for description in apis.values():
        used, violations = exercise(description)
        print(f"TensorRT {description['version']}: rmpe uses {len(used)} names and calls, "
              f"{len(violations)} not in the real bindings")
        print("  " + "\n  ".join(sorted(used)))
        for violation in violations:
            print(f"  MISMATCH {violation}")
        status = status or int(bool(violations))
    return status


if __name__ == "__main__":
    sys.exit(main())
