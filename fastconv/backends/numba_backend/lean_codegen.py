"""numba's code generation without the work whose result is thrown away.

numba turns each compiled function into a "library": an LLVM module that is
optimised and then compiled to machine code on its own, with every library it calls
linked in as IR (and optimised and compiled again as part of the caller).  A
``parallel=True`` kernel is four libraries deep -- the loop body (numba's parfor
gufunc), two gufunc wrappers, the kernel -- so its body was optimised four times and
turned into machine code four times, although only the outermost copy ever runs.
`bench/compile_times.py` measured that as half of the cold compile of the kernels.

`install` removes the two kinds of repeated work:

* **machine code on demand**: a library's machine code is emitted when an address in
  it is first asked for (LLVM's MCJIT does this by itself once numba stops forcing
  every module through ``finalize_object`` as it is finished), so a library that is
  only ever linked into others -- a parfor body, a gufunc wrapper -- never is;
  saving a library to numba's on-disk cache asks for its machine code first, and one
  loaded from that cache is added to MCJIT as an object file of its own (numba's
  ``finalize_object`` would also emit every module still pending, which in a process
  that both compiles and loads -- two warm-up processes sharing a cold cache -- is
  most of them);
* **no second optimisation of a parfor's wrappers**: the two gufunc wrapper libraries
  of a parfor are linked into the kernel's library, whose full optimisation covers
  them, so their own full module optimisation (of the already optimised loop body
  they link) is skipped; other gufunc wrappers (``@guvectorize``) are left alone.

What runs is the code of the outermost library, optimised and compiled as before,
but its linked modules are now optimised IR rather than IR that had also been through
the optimiser and a code generator three more times, so instructions differ in places.
`bench/compile_variants.py` times the kernels both ways: the same within noise,
except the 2x2 max pool on rows shorter than a vector, whose scalar loop numba's
repeated passes made 1.1-1.3x faster; a kernel decorated with `plain` keeps numba's
own code generation.

It applies to every numba function the process compiles once the numba backend is
loaded, not only fastconv's.  It relies on numba internals --
``JITCodeLibrary._finalize_specific``, ``CPUCodeLibrary._optimize_final_module`` /
``serialize_using_object_code`` / ``_linking_libraries``, the parfor wrappers' library
names -- and llvmlite's ``ExecutionEngine.add_object_file`` /
``ObjectFileRef.from_data``, checked here; where one has moved nothing is changed.
``FASTCONV_LEAN_CODEGEN=0`` keeps numba's plain behaviour.
"""

from __future__ import annotations

from fastconv.system import env

_PARFOR_BODY = "__numba_parfor_gufunc_"
_GUFUNC_WRAPPER = "<numba.np.ufunc.wrappers._GufuncWrapper"
_PARALLEL_WRAPPER = "parallelgufuncwrapper"

_installed = False
_plain = 0          # > 0 while a `plain` kernel compiles


def plain(dispatcher):
    """Decorator (above ``@njit``): compile this kernel with numba's own code
    generation, for a kernel measured faster that way."""
    from numba.core.compiler_lock import global_compiler_lock

    compile_ = dispatcher.compile

    def compile(sig):
        global _plain
        with global_compiler_lock:      # the libraries a compile finishes are all its own
            _plain += 1
            try:
                return compile_(sig)
            finally:
                _plain -= 1

    dispatcher.compile = compile
    return dispatcher


def _wraps_parfor(library) -> bool:
    """Whether ``library`` is a gufunc wrapper around a parfor body (directly or
    through the other wrapper)."""
    name = library.name
    if name != _PARALLEL_WRAPPER and not name.startswith(_GUFUNC_WRAPPER):
        return False
    return any(linked.name.startswith(_PARFOR_BODY) or _wraps_parfor(linked)
               for linked in library._linking_libraries)


def _emit(library) -> None:
    """Machine code for ``library``'s module alone: MCJIT emits a module when a symbol
    it defines is first looked up (its own functions: no other module has them yet)."""
    from llvmlite import binding as ll

    for function in library._final_module.functions:
        if not function.is_declaration and function.linkage == ll.Linkage.external:
            library._codegen._engine.get_function_address(function.name)
            return


def _load_object(library) -> None:
    """Load a library read from numba's cache (an empty module; its object code kept
    for numba's hook) as an object file of its own, at once."""
    from llvmlite import binding as ll

    engine = library._codegen._engine
    getattr(engine, "_ee", engine).add_object_file(ll.ObjectFileRef.from_data(library._compiled_object))
    library._compiled_object = None       # numba's hook must not hand MCJIT the same code again


def install() -> bool:
    """Put the lean code generation in place (once per process); False when it is
    switched off or numba's internals are not as expected (then nothing changes)."""
    global _installed
    if _installed:
        return True
    if not env.lean_codegen():
        return False
    try:
        from llvmlite import binding as ll
        from numba.core import codegen
    except ImportError:
        return False
    jit_library = getattr(codegen, "JITCodeLibrary", None)
    cpu_library = getattr(codegen, "CPUCodeLibrary", None)
    needed = ((jit_library, "_finalize_specific"), (cpu_library, "_optimize_final_module"),
              (cpu_library, "serialize_using_object_code"), (cpu_library, "_get_compiled_object"),
              (ll.ExecutionEngine, "add_object_file"), (ll.ObjectFileRef, "from_data"))
    if any(cls is None or not callable(getattr(cls, name, None)) for cls, name in needed):
        return False
    plain_optimize = cpu_library._optimize_final_module
    plain_serialize = cpu_library.serialize_using_object_code

    def _finalize_specific(self):
        # as numba's, without finalize_object(), which would emit every module still
        # pending (all the linked-only ones) rather than this one
        self._codegen._scan_and_fix_unresolved_refs(self._final_module)
        if getattr(self, "_compiled_object", None) is not None:
            _load_object(self)
        elif _plain:
            _emit(self)

    def _optimize_final_module(self):
        if not _plain and _wraps_parfor(self):
            return          # the kernel's library optimises these modules once linked
        plain_optimize(self)

    def serialize_using_object_code(self):
        self._ensure_finalized()
        if getattr(self, "_compiled_object", None) is None:
            _emit(self)
        if getattr(self, "_compiled_object", None) is None:
            self._codegen._engine.finalize_object()     # emits every pending module
        return plain_serialize(self)

    jit_library._finalize_specific = _finalize_specific
    cpu_library._optimize_final_module = _optimize_final_module
    cpu_library.serialize_using_object_code = serialize_using_object_code
    _installed = True
    return True
