"""A compiled Gram product ``G = A Aᵀ`` of one block, for fits on a CPU.

Why
---
On a CPU every pass over the data forms, block by block, the rows ``A = [J̃ | r̃]ᵀ``
((p+1) × k, contiguous along the points) and adds their Gram matrix ``A Aᵀ`` to a
running sum (:func:`curvax.core.reduction.block_gram`).  XLA:CPU lowers that small
product to a library kernel made for large matrices: for p + 1 = 4 and k = 4096 it
runs at 8–10 GFlop/s and takes about half of a pass (``benchmarks/README.md``, sessions
9–16: a dozen formulations in XLA were measured and none was faster).  A loop written
for the shape — sixteen running sums in vector registers while the points stream by —
needs a fraction of that time, and a pass then costs what forming the rows costs.
Measured on the 2-core CI-class VM (AMD EPYC, Zen 5), one compiled pass over blocks of
4096 points on one core, fastest of 30, ns per point: XLA's product → this kernel (the
rows alone, summed without any product, in brackets)::

    p + 1 = 4 (exponential)          10⁵ points: 3.4 → 2.4 (2.3)    10⁶: 3.5 → 2.6 (2.4)
    p + 1 = 11 (three Gaussians)     10⁵ points: 12.5 → 6.0 (5.5)   10⁶: 12.8 → 6.2 (6.0)

What
----
:func:`block_gram_product` hands the block to a function that XLA calls from inside the
fit program, on the thread that runs it, with no return to Python: a *typed FFI target*
(:data:`TARGETS`). The block may come in pieces — operands of one row (k,) or of several
(r, k), its rows in turn — so that rows formed apart need not be stacked. The function
is written here in LLVM's intermediate language and compiled for the host processor by
`llvmlite <https://llvmlite.readthedocs.io>`_ once per process (about 0.07 s). For every
pair ``i ≤ j`` it computes

    ``G[i, j] = G[j, i] = Σ_n A[i, n]·A[j, n]``

four rows by four rows at a time (16 sums per tile, one sweep of the block per tile;
rows past the last in the final tile repeat the last row and are not stored).  The
additions are marked *reassociable* and products may be *contracted* into fused
multiply–adds, so LLVM spreads each sum over the lanes of the processor's vectors; no
other "fast math" is allowed, so a NaN or infinity in the block reaches ``G`` as
through any product — which is what sends the reduction to its QR fallback
(:func:`curvax.core.reduction.block_gram`).  The order of the additions differs from
XLA's product, so ``G`` agrees with it to rounding, not bit for bit; the order is fixed
by the compiled code, so repeated fits give identical results.  There is one function
for float64 blocks and one for float32 (:data:`TARGETS`), each compiled when a fit first
needs it; a float32 block's sums are float32, as in XLA's product.

The calling convention is XLA's C API (``xla/ffi/api/c_api.h``, API version 0.1). On a
64-bit platform, in bytes: ``XLA_FFI_CallFrame`` holds ``extension_start`` at 8, the
execution ``stage`` (32-bit) at 32, the argument buffers ``args.args`` at 72 and the
result buffers ``rets.rets`` at 112, and the number of arguments ``args.size`` at 56; an
``XLA_FFI_Buffer`` holds ``data`` at 24, ``rank`` at 32 and ``dims`` at 40. The handler
first gathers a pointer to every row of every operand (at most :data:`MAX_ROWS`), then
sweeps the tiles. When XLA registers the handler it calls it once with a *metadata*
extension (type 1 at byte 8 of the extension, the metadata pointer at byte 24), whose
API version (``major``, ``minor``: 32-bit, at 24 and 28) and traits (at 32) the handler
fills in. A null return means success.

When
----
:func:`use_for` decides per fit: float64 or float32, at least :data:`MIN_POINTS` points (a fit of
one or two blocks gains nothing measurable, and its first fit would pay the
compilation), one device, and the environment variable ``CURVAX_GRAM_KERNEL`` (read
once) not ``0``.  The first such fit of a process starts building the function on a
thread of its own (llvmlite releases the GIL while LLVM works) while the fit program is
traced; the program's *lowering* waits for it (the product is a JAX primitive,
``curvax_block_gram``, whose CPU lowering emits the FFI call), because XLA looks the
target up when it compiles the program or loads it from the persistent cache.  With
JAX's persistent compilation cache on (:func:`curvax.enable_persistent_cache`), the
function's object code is kept in the same folder, keyed by the IR, the processor and
llvmlite's version, and a later process loads it instead of compiling it again (a
second process's first fit at 10⁴ points: 0.32 s, as without the kernel).  Where the
function cannot be built — no llvmlite, another back end, an XLA that refuses it —
:func:`status` says why, a :class:`~curvax.warnings.PerformanceWarning` says so once,
and the primitive lowers to XLA's product: the same sums.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import threading
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import batching, mlir

from curvax.core.locks import ForkSafeLock
from curvax.warnings import PerformanceWarning

Array = jax.Array

ENV_VAR = "CURVAX_GRAM_KERNEL"

#: Names of the FFI targets in XLA's registry, per dtype of the block.
TARGETS = {
    np.dtype(np.float64): "curvax_block_gram_f64",
    np.dtype(np.float32): "curvax_block_gram_f32",
}
#: LLVM's name for each dtype's element type.
_LLVM_TYPES = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}

#: Fewest points (after bucket padding) for which a fit uses the kernel: three blocks of
#: the CPU's default 4096.
MIN_POINTS = 3 * 4096

#: Most rows (p + 1) for which a block's product uses the kernel.  Measured per point of
#: a pass, 10⁵ points, XLA's product → the kernel: 17 rows 28 → 17 ns, 31 rows 56 → 34,
#: 61 rows 175 → 134, 81 rows 178 → 187 (its 4 × 4 tiles sweep the block once each).
MAX_ROWS = 64

_METADATA = 1  # XLA_FFI_Extension_Metadata
_EXECUTE = 3  # XLA_FFI_ExecutionStage_EXECUTE
_API_VERSION = (0, 1)

_LOCK = ForkSafeLock()  # a child forked during the build builds anew (core/locks.py)
# per dtype, what the one build of this process gave: {"state": "ready" | "off",
# "reason": ..., "engine": the execution engine that owns the machine code, kept so it
# is never freed}; no entry until then.  Replaced as a whole, under the lock.
_BUILT: dict[np.dtype, dict[str, Any]] = {}
_STARTED_LOCK = ForkSafeLock()
_STARTED: set[np.dtype] = set()  # dtypes whose background build (use_for) was started
_F64 = np.dtype(np.float64)


def _tile_ir(t: str) -> str:
    """LLVM IR of ``tile_<t>(rows, g, m, k, i0, j0)``: rows ``i0…i0+3`` × rows
    ``j0…j0+3`` (``rows``: m pointers to k values of LLVM type ``t``) into the (m, m)
    ``g``, both triangles."""
    out = [
        f"define internal void @tile_{t}(ptr noalias %rows, ptr noalias %g, i64 %m, i64 %k,"
        " i64 %i0, i64 %j0) {",
        "entry:",
        "  %last = sub i64 %m, 1",
    ]
    for side, base in (("a", "i0"), ("b", "j0")):
        for d in range(4):
            out += [
                f"  %{side}i{d} = add i64 %{base}, {d}",
                f"  %{side}c{d} = call i64 @llvm.umin.i64(i64 %{side}i{d}, i64 %last)",
                f"  %{side}s{d} = getelementptr ptr, ptr %rows, i64 %{side}c{d}",
                f"  %{side}p{d} = load ptr, ptr %{side}s{d}",
            ]
    out += ["  %empty = icmp eq i64 %k, 0", "  br i1 %empty, label %done, label %loop", "loop:"]
    out.append("  %n = phi i64 [0, %entry], [%n1, %loop]")
    pairs = [(i, j) for i in range(4) for j in range(4)]
    out += [f"  %s{i}{j} = phi {t} [0.0, %entry], [%t{i}{j}, %loop]" for i, j in pairs]
    for side in "ab":
        for d in range(4):
            out += [
                f"  %q{side}{d} = getelementptr {t}, ptr %{side}p{d}, i64 %n",
                f"  %v{side}{d} = load {t}, ptr %q{side}{d}",
            ]
    for i, j in pairs:
        out += [
            f"  %m{i}{j} = fmul reassoc contract {t} %va{i}, %vb{j}",
            f"  %t{i}{j} = fadd reassoc contract {t} %s{i}{j}, %m{i}{j}",
        ]
    out += [
        "  %n1 = add nuw nsw i64 %n, 1",
        "  %more = icmp ult i64 %n1, %k",
        "  br i1 %more, label %loop, label %done",
        "done:",
    ]
    out += [f"  %r{i}{j} = phi {t} [0.0, %entry], [%t{i}{j}, %loop]" for i, j in pairs]
    out.append("  br label %st00")
    for n, (i, j) in enumerate(pairs):
        after = f"st{pairs[n + 1][0]}{pairs[n + 1][1]}" if n + 1 < len(pairs) else "end"
        out += [
            f"st{i}{j}:",
            f"  %oka{i}{j} = icmp ult i64 %ai{i}, %m",
            f"  %okb{i}{j} = icmp ult i64 %bi{j}, %m",
            f"  %ok{i}{j} = and i1 %oka{i}{j}, %okb{i}{j}",
            f"  br i1 %ok{i}{j}, label %do{i}{j}, label %{after}",
            f"do{i}{j}:",
            f"  %x{i}{j} = mul i64 %ai{i}, %m",
            f"  %y{i}{j} = add i64 %x{i}{j}, %bi{j}",
            f"  %g{i}{j} = getelementptr {t}, ptr %g, i64 %y{i}{j}",
            f"  store {t} %r{i}{j}, ptr %g{i}{j}",
            f"  %u{i}{j} = mul i64 %bi{j}, %m",
            f"  %w{i}{j} = add i64 %u{i}{j}, %ai{i}",
            f"  %h{i}{j} = getelementptr {t}, ptr %g, i64 %w{i}{j}",
            f"  store {t} %r{i}{j}, ptr %h{i}{j}",
            f"  br label %{after}",
        ]
    out += ["end:", "  ret void", "}"]
    return "\n".join(out)


#: Byte offsets of the fields the handler reads, in XLA's C API structs (module
#: docstring): ``XLA_FFI_CallFrame``, ``XLA_FFI_Extension_Base``, the metadata extension
#: and its ``XLA_FFI_Metadata``, and ``XLA_FFI_Buffer``.
_OFFSETS = {
    "frame.extension_start": 8, "frame.stage": 32, "frame.args.size": 56,
    "frame.args.args": 72, "frame.rets.rets": 112,
    "extension.type": 8, "extension.metadata": 24,
    "metadata.major": 24, "metadata.minor": 28, "metadata.traits": 32,
    "buffer.data": 24, "buffer.rank": 32, "buffer.dims": 40,
}


def _field(name: str, base: str, field: str, kind: str = "ptr") -> str:
    """IR that loads the ``kind`` at ``field`` (:data:`_OFFSETS`) of the struct at
    ``%base`` into ``%name``."""
    return (
        f"  %{name}.at = getelementptr i8, ptr %{base}, i64 {_OFFSETS[field]}\n"
        f"  %{name} = load {kind}, ptr %{name}.at"
    )


def _store(value: str, base: str, field: str) -> str:
    """IR that stores the 32-bit ``value`` at ``field`` of the struct at ``%base``."""
    return (
        f"  %{field}.at = getelementptr i8, ptr %{base}, i64 {_OFFSETS[field]}\n"
        f"  store i32 {value}, ptr %{field}.at"
    )


def _handler_ir(target: str, t: str) -> str:
    """LLVM IR of the FFI handler ``target`` for blocks of LLVM type ``t`` (module
    docstring)."""
    return f"""
define i64 @{target}(ptr %cf) {{
entry:
{_field("ext", "cf", "frame.extension_start")}
  %has = icmp ne ptr %ext, null
  br i1 %has, label %meta, label %stage
meta:
{_field("type", "ext", "extension.type", "i32")}
  %ismeta = icmp eq i32 %type, {_METADATA}
  br i1 %ismeta, label %fill, label %done
fill:
{_field("md", "ext", "extension.metadata")}
{_store(str(_API_VERSION[0]), "md", "metadata.major")}
{_store(str(_API_VERSION[1]), "md", "metadata.minor")}
{_store("0", "md", "metadata.traits")}
  br label %done
stage:
{_field("st", "cf", "frame.stage", "i32")}
  %isexec = icmp eq i32 %st, {_EXECUTE}
  br i1 %isexec, label %exec, label %done
exec:
  %rows = alloca ptr, i64 {MAX_ROWS}
{_field("nargs", "cf", "frame.args.size", "i64")}
{_field("args", "cf", "frame.args.args")}
{_field("rets", "cf", "frame.rets.rets")}
  %ret0 = load ptr, ptr %rets
{_field("g", "ret0", "buffer.data")}
  br label %aloop
aloop:
  %j = phi i64 [0, %exec], [%j1, %alatch]
  %m0 = phi i64 [0, %exec], [%m, %alatch]
  %bpp = getelementptr ptr, ptr %args, i64 %j
  %b = load ptr, ptr %bpp
{_field("d", "b", "buffer.data")}
{_field("rank", "b", "buffer.rank", "i64")}
{_field("dims", "b", "buffer.dims")}
  %d0 = load i64, ptr %dims
  %is2 = icmp eq i64 %rank, 2
  br i1 %is2, label %two, label %one
two:
  %d1p = getelementptr i64, ptr %dims, i64 1
  %d1 = load i64, ptr %d1p
  br label %operand
one:
  br label %operand
operand:
  %nr = phi i64 [%d0, %two], [1, %one]
  %k = phi i64 [%d1, %two], [%d0, %one]
  %none = icmp eq i64 %nr, 0
  br i1 %none, label %alatch, label %rloop
rloop:
  %r = phi i64 [0, %operand], [%r1, %rloop]
  %off = mul i64 %r, %k
  %rp = getelementptr {t}, ptr %d, i64 %off
  %slotn = add i64 %m0, %r
  %slot = getelementptr ptr, ptr %rows, i64 %slotn
  store ptr %rp, ptr %slot
  %r1 = add i64 %r, 1
  %rmore = icmp ult i64 %r1, %nr
  br i1 %rmore, label %rloop, label %alatch
alatch:
  %m = add i64 %m0, %nr
  %j1 = add i64 %j, 1
  %amore = icmp ult i64 %j1, %nargs
  br i1 %amore, label %aloop, label %tiles
tiles:
  br label %iloop
iloop:
  %i0 = phi i64 [0, %tiles], [%i0n, %ilatch]
  br label %jloop
jloop:
  %j0 = phi i64 [%i0, %iloop], [%j0n, %jloop]
  call void @tile_{t}(ptr %rows, ptr %g, i64 %m, i64 %k, i64 %i0, i64 %j0)
  %j0n = add i64 %j0, 4
  %jmore = icmp ult i64 %j0n, %m
  br i1 %jmore, label %jloop, label %ilatch
ilatch:
  %i0n = add i64 %i0, 4
  %imore = icmp ult i64 %i0n, %m
  br i1 %imore, label %iloop, label %done
done:
  ret i64 0
}}
"""


def module_ir(dtype: Any = _F64) -> str:
    """The LLVM IR module of the handler for blocks of ``dtype`` (module docstring); each
    dtype's is built when a fit first needs it."""
    t = _LLVM_TYPES[np.dtype(dtype)]
    return "\n".join(
        [_tile_ir(t), _handler_ir(TARGETS[np.dtype(dtype)], t),
         "declare i64 @llvm.umin.i64(i64, i64)"]
    )


def _object_cache_file(ir: str, cpu: str, features: str, triple: str) -> str | None:
    """Where the compiled object code is kept beside JAX's persistent compilation cache
    (a local folder only), keyed by everything that shapes it; None without the cache."""
    import llvmlite

    folder = jax.config.jax_compilation_cache_dir
    if not folder or "://" in str(folder):
        return None
    key = "\n".join((ir, cpu, features, triple, llvmlite.__version__))
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return os.path.join(str(folder), f"curvax-gram-kernel-{digest}.o")


def _compile(dtype: np.dtype) -> tuple[Any, int]:
    """``(execution engine, handler address)``: ``dtype``'s module compiled for the host
    CPU.

    With JAX's persistent compilation cache on, the object code is stored there too and
    a later process loads it instead of optimising and compiling the module again.
    """
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    ir = module_ir(dtype)
    cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    triple = llvm.get_process_triple()
    cache_file = _object_cache_file(ir, cpu, features, triple)
    cached = None
    if cache_file is not None and os.path.isfile(cache_file):
        with open(cache_file, "rb") as fh:
            cached = fh.read()
    module = llvm.parse_assembly(ir)
    module.verify()
    machine = llvm.Target.from_triple(triple).create_target_machine(
        cpu=cpu, features=features, opt=2, jit=True
    )
    if cached is None:
        tuning = llvm.PipelineTuningOptions(speed_level=2)
        tuning.loop_vectorization = True
        passes = llvm.create_pass_builder(machine, tuning)
        passes.getModulePassManager().run(module, passes)
    engine = llvm.create_mcjit_compiler(module, machine)

    def store(_module: Any, buffer: bytes) -> None:
        if cache_file is None or cached is not None:
            return
        try:  # a cache: a folder that cannot be written only costs the next process time
            tmp = f"{cache_file}.{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(buffer)
            os.replace(tmp, cache_file)
        except OSError:
            pass

    engine.set_object_cache(store, lambda _module: cached)
    engine.finalize_object()
    return engine, engine.get_function_address(TARGETS[dtype])


def _register(target: str, address: int) -> None:
    capsule_new = ctypes.pythonapi.PyCapsule_New
    capsule_new.restype = ctypes.py_object
    capsule_new.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
    capsule = capsule_new(address, b"xla._CUSTOM_CALL_TARGET", None)
    jax.ffi.register_ffi_target(target, capsule, platform="cpu", api_version=1)


def _build(dtype: Any = _F64) -> dict[str, Any]:
    """Compile and register ``dtype``'s function once per process; what happened (see
    :func:`status`)."""
    global _BUILT
    dt = np.dtype(dtype)
    built = _BUILT.get(dt)
    if built is not None:
        return built
    with _LOCK:
        if dt in _BUILT:
            return _BUILT[dt]
        if _env_off():
            built = {"state": "off", "reason": f"{ENV_VAR}=0"}
        elif jax.default_backend() != "cpu":
            built = {"state": "off", "reason": f"JAX's default back end is {jax.default_backend()}"}
        else:
            try:
                engine, address = _compile(dt)
                _register(TARGETS[dt], address)
            except ImportError as err:
                built = {"state": "off", "reason": f"llvmlite is not importable ({err})"}
            except Exception as err:  # an llvmlite or XLA that refuses the function
                built = {"state": "off", "reason": f"{type(err).__name__}: {err}"}
            else:
                built = {"state": "ready", "reason": "compiled and registered", "engine": engine}
            warned = any(b["state"] == "off" for b in _BUILT.values())
            if built["state"] == "off" and not warned:  # a broken install: say so, once
                warnings.warn(
                    f"curvax's compiled Gram product is unavailable ({built['reason']}); "
                    f"fits on this CPU use XLA's slower matrix product instead (set "
                    f"{ENV_VAR}=0 to choose that and silence this warning)",
                    PerformanceWarning,
                    stacklevel=2,
                )
        _BUILT = {**_BUILT, dt: built}
        return built


@functools.cache
def _env_off() -> bool:
    return os.environ.get(ENV_VAR, "").strip() == "0"


def enabled(dtype: Any = _F64) -> bool:
    """Whether this process has the compiled Gram product for ``dtype`` blocks (builds
    it, or waits for the build under way; module docstring)."""
    return _build(dtype)["state"] == "ready"


def status(dtype: Any = _F64) -> str:
    """``'ready'`` or why the compiled Gram product for ``dtype`` blocks is not used
    (waits for the build)."""
    built = _build(dtype)
    return "ready" if built["state"] == "ready" else f"off: {built['reason']}"


def use_for(n_points: int, dtype: Any, mesh: Any = None) -> bool:
    """Whether a fit of ``n_points`` (padded) points in ``dtype`` uses the kernel: float64
    or float32, at least :data:`MIN_POINTS` points, on one device (no ``mesh``), and the
    kernel not known to be unavailable.

    The first time it says yes, the kernel is built on a thread of its own (llvmlite
    releases the GIL while LLVM works), so that building overlaps the tracing of the fit
    program; only the program's lowering waits for it (:func:`block_gram_product`).
    """
    dt = np.dtype(dtype)
    if mesh is not None or not takes(dt, 1) or n_points < MIN_POINTS:
        return False
    if _env_off():
        return False
    built = _BUILT.get(dt)
    if built is None:
        _start_build(dt)
        return True
    return built["state"] == "ready"


def _start_build(dtype: np.dtype) -> None:
    """Start :func:`_build` of ``dtype``'s function on a daemon thread, once."""
    with _STARTED_LOCK:
        if dtype in _STARTED:
            return
        _STARTED.add(dtype)
    threading.Thread(
        target=_build, args=(dtype,), name="curvax-gram-kernel", daemon=True
    ).start()


def xla_gram_product(a_t: Array) -> Array:
    """``a_t a_tᵀ`` by XLA's matrix product (full precision): the ``'dot'`` Gram style, and
    this module's fallback."""
    return jax.lax.dot_general(
        a_t, a_t, (((1,), (1,)), ((), ())), precision=jax.lax.Precision.HIGHEST
    )


def _stacked(*blocks: Array) -> Array:
    """The operands of :func:`block_gram_product` as one (m, k) array."""
    return jnp.concatenate([b.reshape(-1, b.shape[-1]) for b in blocks])


def _n_rows(blocks: tuple[Any, ...]) -> int:
    return sum(b.shape[0] if len(b.shape) == 2 else 1 for b in blocks)


def takes(dtype: Any, n_rows: int) -> bool:
    """Whether :func:`block_gram_product` takes a block of ``n_rows`` rows in ``dtype``:
    float64 or float32, at most :data:`MAX_ROWS` rows."""
    return np.dtype(dtype) in TARGETS and n_rows <= MAX_ROWS


_block_gram_p = Primitive("curvax_block_gram")
_block_gram_p.def_abstract_eval(
    lambda *blocks: jax.core.ShapedArray((_n_rows(blocks),) * 2, blocks[0].dtype)
)
# called outside jit: compiled as a one-product program (inside it the primitive is
# staged out, so this does not recurse)
_block_gram_p.def_impl(lambda *blocks: _staged(*blocks))
_staged = jax.jit(lambda *blocks: _block_gram_p.bind(*blocks))
_xla_lowering = mlir.lower_fun(
    lambda *blocks: xla_gram_product(_stacked(*blocks)), multiple_results=False
)
_ffi_lowerings = {dt: jax.ffi.ffi_lowering(target) for dt, target in TARGETS.items()}


def _cpu_lowering(ctx: Any, *blocks: Any) -> Any:
    # here, not at tracing, the program needs the function: XLA compiles it next (or
    # loads it from the persistent cache), and both look the target up
    dtype = np.dtype(ctx.avals_in[0].dtype)
    if enabled(dtype):
        return _ffi_lowerings[dtype](ctx, *blocks)
    return _xla_lowering(ctx, *blocks)  # the same sums, by XLA's product


mlir.register_lowering(_block_gram_p, _xla_lowering)  # other platforms: XLA's product
mlir.register_lowering(_block_gram_p, _cpu_lowering, platform="cpu")


def _batched(args: tuple[Any, ...], dims: tuple[Any, ...]) -> tuple[Array, int]:
    """``vmap`` of the product: one product per batch member, in a loop (``lax.map``),
    so that each equals the unbatched product bit for bit."""
    size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
    blocks = [
        jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
        for a, d in zip(args, dims, strict=True)
    ]
    return jax.lax.map(lambda bs: _block_gram_p.bind(*bs), blocks), 0


batching.primitive_batchers[_block_gram_p] = _batched


def block_gram_product(*blocks: Array) -> Array:
    """``A Aᵀ`` of the float64 or float32 block ``A`` whose rows are those of ``blocks``
    in turn: curvax's compiled loop on a CPU where it is available, XLA's matrix product
    of the stacked rows otherwise (module docstring).

    Each of ``blocks`` is one row of k points (k,) or several (r, k).  Rows formed one
    by one (:mod:`curvax.core.separate_rows`) can then be handed over as they are,
    each written once by its own loop, instead of being copied again into a stacked
    block: one pass of the three-peak model (p = 10, one core, 10⁶ points) 5.9–6.0 →
    5.3 ns per point (``benchmarks/README.md``, session 23).

    Raises
    ------
    ValueError
        If the blocks are not 1-D or 2-D arrays of one length and one dtype (float64 or
        float32), or hold more than :data:`MAX_ROWS` rows in all.
    """
    if not blocks:
        raise ValueError("blocks: expected at least one block of rows")
    k, dtype = blocks[0].shape[-1], np.dtype(blocks[0].dtype)
    for b in blocks:
        if not takes(dtype, 1) or b.dtype != dtype or b.ndim not in (1, 2) or b.shape[-1] != k:
            raise ValueError(
                f"blocks: expected 1-D or 2-D arrays of {k} points, all float64 or all "
                f"float32, got {b.dtype} {b.shape}"
            )
    if not takes(dtype, _n_rows(blocks)):
        raise ValueError(
            f"blocks: {_n_rows(blocks)} rows in all; the compiled product takes at most "
            f"{MAX_ROWS}"
        )
    return _block_gram_p.bind(*blocks)
