"""Explicit SIMD vectors for numba kernels: a host-sized vector type and the handful of
operations a register-blocked kernel needs (load, store, broadcast, fused
multiply-add, horizontal sum).

Why: numba leaves vectorisation to LLVM's loop vectoriser, which vectorises an
innermost loop but keeps accumulators that live across outer loops in memory (a
load and a store per FMA).  A convolution's register block -- say 8 output channels
x 48 positions, summed over every input channel and tap -- needs those accumulators
in registers.  Values of the `Vec` type are SSA values, so a kernel that holds 24 of
them in local variables gets 24 vector registers, and its inner loop is loads,
broadcasts and FMAs only (measured here: 205 GFLOP/s on one core, ~80 % of the FMA
peak, against ~60 for the same loops written on arrays).

Vectors are as wide as the registers of the CPU numba compiles for (`target`): 512
bits with AVX-512, 256 with AVX/AVX2, 128 elsewhere (SSE, NEON), so ``lanes`` float32
are 16, 8 or 4.  That CPU is this host unless numba's ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` name another one; numba keys its on-disk cache by the same
name and features, so code built for one target is never loaded for another.
Register-blocked kernels size their blocks from `Target.registers`.  Loads and
stores are unaligned and unchecked: callers keep indices in bounds.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.codegen import get_host_cpu_features as host_cpu_features
from numba.extending import intrinsic, models, register_model


@dataclass(frozen=True)
class Target:
    """The vector unit of the CPU numba compiles for."""
    cpu: str             # LLVM's name for it, e.g. "znver3"
    vector_bits: int     # width of one vector register
    registers: int       # vector registers the compiler can allocate
    fma: bool            # fused multiply-add instructions


def target_of(cpu: str, features: str, machine: str) -> Target:
    """`Target` of an LLVM CPU name and feature string ("+avx2,-avx512f,...")."""
    on = {f[1:] for f in features.split(",") if f.startswith("+")}
    arm = machine.lower() in ("aarch64", "arm64")
    if "avx512f" in on:
        bits, registers = 512, 32
    elif "avx" in on:
        bits, registers = 256, 16
    else:                                  # SSE: 16 xmm; NEON: 32 q registers
        bits, registers = 128, 32 if arm else 16
    return Target(cpu, bits, registers, "fma" in on or arm)


@functools.lru_cache(maxsize=1)
def target() -> Target:
    """This host, or the CPU that ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` name."""
    features = config.CPU_FEATURES
    if features is None:                   # numba's reading: "" where LLVM has none, no
        features = host_cpu_features()     # AVX where numba's ENABLE_AVX turns it off
    return target_of(config.CPU_NAME or llvm.get_host_cpu_name(), features, platform.machine())


VECTOR_BITS = target().vector_bits


def lanes(dtype) -> int:
    """Lanes of a vector of ``dtype`` (a numpy dtype or its itemsize in bytes)."""
    itemsize = getattr(dtype, "itemsize", dtype)
    return VECTOR_BITS // (8 * int(itemsize))


class Vec(types.Type):
    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VECTOR_BITS // dtype.bitwidth
        super().__init__(name=f"Vec({dtype}x{self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _address(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


@intrinsic
def vlanes(typingctx, array):
    """Lanes of a vector of ``array``'s dtype, as a compile-time constant."""
    count = VECTOR_BITS // array.dtype.bitwidth

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, count)

    return types.intp(array), codegen


@intrinsic
def vload(typingctx, array, index):
    """``array[index:index + lanes]`` (1-D, contiguous) as a vector."""
    vec = Vec(array.dtype)

    def codegen(context, builder, sig, args):
        pointer = _address(context, builder, sig.args[0], args[0], args[1])
        pointer = builder.bitcast(pointer, context.get_value_type(vec).as_pointer())
        return builder.load(pointer, align=array.dtype.bitwidth // 8)

    return vec(array, index), codegen


@intrinsic
def vstore(typingctx, array, index, value):
    """``array[index:index + lanes] = value``."""
    def codegen(context, builder, sig, args):
        pointer = _address(context, builder, sig.args[0], args[0], args[1])
        pointer = builder.bitcast(pointer, args[2].type.as_pointer())
        builder.store(args[2], pointer, align=array.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(array, index, value), codegen


@intrinsic
def vsplat(typingctx, like, scalar):
    """A vector of ``like``'s dtype with ``scalar`` in every lane."""
    vec = Vec(like.dtype)

    def codegen(context, builder, sig, args):
        vtype = context.get_value_type(vec)
        value = context.cast(builder, args[1], sig.args[1], vec.dtype)
        one = builder.insert_element(ir.Constant(vtype, ir.Undefined), value,
                                     ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), vec.lanes), [0] * vec.lanes)
        return builder.shuffle_vector(one, ir.Constant(vtype, ir.Undefined), mask)

    return vec(like, scalar), codegen


@intrinsic
def vsplat_at(typingctx, array, index):
    """``array[index]`` in every lane of a vector of its dtype: one broadcast load,
    at the raw ``index`` (no negative-index wraparound: that took a compare and a
    conditional move per load)."""
    vec = Vec(array.dtype)

    def codegen(context, builder, sig, args):
        vtype = context.get_value_type(vec)
        value = builder.load(_address(context, builder, sig.args[0], args[0], args[1]))
        one = builder.insert_element(ir.Constant(vtype, ir.Undefined), value,
                                     ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), vec.lanes), [0] * vec.lanes)
        return builder.shuffle_vector(one, ir.Constant(vtype, ir.Undefined), mask)

    return vec(array, index), codegen


@intrinsic
def vzero(typingctx, like):
    """A zero vector of ``like``'s dtype."""
    vec = Vec(like.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vec), None)

    return vec(like), codegen


def _intrinsic_name(base, vtype):
    bits = 32 if isinstance(vtype.element, ir.FloatType) else 64
    return f"llvm.{base}.v{vtype.count}f{bits}"


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane by lane: one rounding (LLVM's ``fma``) where the CPU has
    FMA instructions, a multiply and an add elsewhere (``fmuladd``; ``fma`` would
    call the C library per lane there)."""
    base = "fma" if target().fma else "fmuladd"

    def codegen(context, builder, sig, args):
        vtype = args[0].type
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vtype, [vtype] * 3),
                                            _intrinsic_name(base, vtype))
        return builder.call(fn, args)

    return a(a, b, c), codegen


@intrinsic
def vsum(typingctx, value):
    """The sum of the lanes (in any order: a tree of vector adds)."""
    def codegen(context, builder, sig, args):
        vtype = args[0].type
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vtype.element, [vtype.element, vtype]),
            _intrinsic_name("vector.reduce.fadd", vtype))
        return builder.call(fn, [ir.Constant(vtype.element, 0.0), args[0]], fastmath=("reassoc",))

    return value.dtype(value), codegen


def _first_lanes_mask(builder, count, lanes):
    """<lanes x i1>: lane i is set where i < count."""
    index = ir.Constant(ir.VectorType(ir.IntType(64), lanes), list(range(lanes)))
    splat = builder.insert_element(ir.Constant(ir.VectorType(ir.IntType(64), lanes), ir.Undefined),
                                   count, ir.Constant(ir.IntType(32), 0))
    splat = builder.shuffle_vector(splat, ir.Constant(splat.type, ir.Undefined),
                                   ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))
    return builder.icmp_signed("<", index, splat)


def _masked_name(base, vtype):
    bits = 32 if isinstance(vtype.element, ir.FloatType) else 64
    return f"llvm.masked.{base}.v{vtype.count}f{bits}.p0"


@intrinsic
def vload_first(typingctx, array, index, count):
    """``array[index:index + count]`` in the first ``count`` lanes (0 <= count <=
    lanes), zeros in the others; nothing past ``count`` is read."""
    vec = Vec(array.dtype)

    def codegen(context, builder, sig, args):
        vtype = context.get_value_type(vec)
        pointer = _address(context, builder, sig.args[0], args[0], args[1])
        pointer = builder.bitcast(pointer, vtype.as_pointer())
        count64 = context.cast(builder, args[2], sig.args[2], types.int64)
        mask = _first_lanes_mask(builder, count64, vec.lanes)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vtype, [vtype.as_pointer(), ir.IntType(32), mask.type, vtype]),
            _masked_name("load", vtype))
        return builder.call(fn, [pointer, ir.Constant(ir.IntType(32), array.dtype.bitwidth // 8), mask,
                                 ir.Constant(vtype, None)])

    return vec(array, index, count), codegen


@intrinsic
def vstore_first(typingctx, array, index, value, count):
    """``array[index:index + count] = value[:count]``; nothing past ``count`` is written."""
    def codegen(context, builder, sig, args):
        vtype = args[2].type
        pointer = _address(context, builder, sig.args[0], args[0], args[1])
        pointer = builder.bitcast(pointer, vtype.as_pointer())
        count64 = context.cast(builder, args[3], sig.args[3], types.int64)
        mask = _first_lanes_mask(builder, count64, vtype.count)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vtype, vtype.as_pointer(), ir.IntType(32), mask.type]),
            _masked_name("store", vtype))
        builder.call(fn, [args[2], pointer, ir.Constant(ir.IntType(32), array.dtype.bitwidth // 8), mask])
        return context.get_dummy_value()

    return types.void(array, index, value, count), codegen


@intrinsic
def vadd(typingctx, a, b):
    """``a + b`` lane by lane."""
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return a(a, b), codegen


def _shuffle(name, doc, lane_map):
    """An intrinsic ``name(a, b)``: lanes of the concatenation ``a ++ b`` picked by
    ``lane_map(lanes)`` (a shufflevector with a constant mask)."""
    def impl(typingctx, a, b):
        def codegen(context, builder, sig, args):
            mask = lane_map(args[0].type.count)
            return builder.shuffle_vector(args[0], args[1],
                                          ir.Constant(ir.VectorType(ir.IntType(32), len(mask)), mask))

        return a(a, b), codegen

    impl.__name__ = impl.__qualname__ = name
    impl.__doc__ = doc
    return intrinsic(impl)


veven = _shuffle("veven", "Lanes 0, 2, 4, ... of ``a ++ b``: the even elements of 2 vectors.",
                 lambda n: list(range(0, 2 * n, 2)))
vodd = _shuffle("vodd", "Lanes 1, 3, 5, ... of ``a ++ b``: the odd elements of 2 vectors.",
                lambda n: list(range(1, 2 * n, 2)))
vzip_lo = _shuffle("vzip_lo", "``a0, b0, a1, b1, ...``: the first half of ``a`` and ``b`` interleaved.",
                   lambda n: [k // 2 + (k % 2) * n for k in range(n)])
vzip_hi = _shuffle("vzip_hi", "The second half of ``a`` and ``b`` interleaved.",
                   lambda n: [n // 2 + k // 2 + (k % 2) * n for k in range(n)])
