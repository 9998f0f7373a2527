"""``torch_trn3.nki.custom_op``: an NKI kernel as a torch operator.

Why: an ``@nki.jit`` kernel runs eagerly on ``trn`` tensors, but dynamo,
AOTAutograd and inductor cannot trace into it (it executes tile by tile on
real device memory). Wrapping it in ``torch.library.custom_op`` makes it one
opaque node: dynamo records the call without a graph break, the fake (meta)
implementation gives compile the output shapes, and ``register_autograd``
lets a second NKI kernel be its backward, so the op trains in eager and in
compiled graphs alike. This is how the real stack brings NKI into PyTorch
(torch-neuronx ``nki_op``); the wrapper adds the checks a kernel author
needs off the hardware:

- every tensor argument must be on the ``trn`` device (one device), else a
  :class:`NkiOpError` naming the op, the argument and its device;
- the first eager call per input signature checks the kernel's outputs
  against the fake implementation (shape and dtype), so a fake that would
  make ``torch.compile`` plan the wrong buffers fails loudly in eager first.

Usage (annotations give the schema, as for ``torch.library.custom_op``)::

    @nki.custom_op("mylib::rmsnorm", fake=lambda x, w, eps: torch.empty_like(x))
    @nki.jit
    def rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        ...

or ``nki.custom_op("mylib::rmsnorm", kernel, fake=..., schema="(Tensor x, ...) -> Tensor")``.
``backward=`` / ``setup_context=`` take ``torch.library.register_autograd``'s
functions; the backward calls another ``nki.custom_op`` (so it is opaque in the
compiled backward graph too).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from torch.utils import _pytree as pytree

__all__ = ["custom_op", "NkiOpError", "NKIOpError"]


class NkiOpError(ValueError):
    """A call or a definition of an NKI custom op that cannot work as given."""


#: The same class under the spelling ``torch_trn3.nki`` imports.
NKIOpError = NkiOpError


def _device_name() -> str:
    import torch_trn3
    return torch_trn3.DEVICE_NAME


def _python_function(kernel: Callable) -> Callable:
    """The plain function under an ``@nki.jit`` kernel (its annotations give the schema)."""
    for attr in ("__wrapped__", "func", "fn", "function", "_func"):
        inner = getattr(kernel, attr, None)
        if inspect.isfunction(inner):
            return inner
    if inspect.isfunction(kernel) or inspect.ismethod(kernel):
        return kernel
    call = getattr(type(kernel), "__call__", None)
    raise NkiOpError(f"cannot find the Python function of kernel {kernel!r} "
                     f"({type(kernel).__name__}{'' if call is None else ' is callable'}); "
                     "pass schema= explicitly")


def _infer_schema(opname: str, kernel: Callable, mutates_args) -> str:
    fn = _python_function(kernel)
    sig = inspect.signature(fn)
    missing = [p for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty]
    if missing or sig.return_annotation is inspect.Signature.empty:
        what = ", ".join(repr(p.name) for p in missing) or "the return value"
        raise NkiOpError(f"nki.custom_op({opname!r}): kernel {fn.__name__} has no type annotation "
                         f"for {what}; annotate every argument and the return "
                         "(torch.Tensor, float, int, ...) or pass schema=\"(Tensor x, ...) -> Tensor\"")
    return torch.library.infer_schema(fn, mutates_args=mutates_args)


def _check_devices(opname: str, names: Sequence[str], args: tuple) -> None:
    """Every tensor argument on one ``trn`` device, or a typed error naming it."""
    device_type = _device_name()
    seen: Optional[torch.device] = None
    for name, value in zip(names, args):
        tensors = value if isinstance(value, (list, tuple)) else [value]
        for t in tensors:
            if not isinstance(t, torch.Tensor):
                continue
            if t.device.type != device_type:
                raise NkiOpError(f"{opname}: argument {name!r} is on {t.device}; NKI kernels run on "
                                 f"{device_type} tensors (move it with .to({device_type!r}))")
            if seen is not None and t.device != seen:
                raise NkiOpError(f"{opname}: argument {name!r} is on {t.device} but an earlier "
                                 f"argument is on {seen}; one kernel runs on one device")
            seen = t.device


def _signature_key(args: tuple) -> tuple:
    return tuple((tuple(a.shape), a.dtype, a.device) if isinstance(a, torch.Tensor) else
                 (type(a).__name__, a if isinstance(a, (int, float, bool, str, type(None))) else id(a))
                 for a in pytree.tree_leaves(args))


def _check_against_fake(opname: str, opoverload, args: tuple, kwargs: dict, out: Any) -> None:
    """Compare the kernel's outputs with what the registered fake says."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fake_args, fake_kwargs = pytree.tree_map_only(torch.Tensor, mode.from_tensor, (args, kwargs))
        expected = opoverload(*fake_args, **fake_kwargs)
    got_t = [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]
    want_t = [x for x in pytree.tree_leaves(expected) if isinstance(x, torch.Tensor)]
    if len(got_t) != len(want_t):
        raise NkiOpError(f"{opname}: the kernel returned {len(got_t)} tensor(s) but the fake "
                         f"implementation returns {len(want_t)}")
    for i, (g, w) in enumerate(zip(got_t, want_t)):
        if tuple(g.shape) != tuple(w.shape) or g.dtype != w.dtype:
            raise NkiOpError(f"{opname}: output {i} of the kernel is {tuple(g.shape)} {g.dtype} but "
                             f"the fake implementation says {tuple(w.shape)} {w.dtype}; "
                             "torch.compile would plan the wrong buffer (fix the fake)")


def _check_outputs(opname: str, out: Any) -> Any:
    """The kernel's results as the op returns them: torch tensors (a tuple for several)."""
    if isinstance(out, list):
        out = tuple(out)
    for i, x in enumerate(out if isinstance(out, tuple) else (out,)):
        if x is not None and not isinstance(x, (torch.Tensor, int, float, bool)):
            raise NkiOpError(f"{opname}: the kernel returned {type(x).__name__} as output {i}; "
                             "an NKI kernel called on trn tensors returns torch tensors "
                             "(allocate outputs with nl.ndarray(..., buffer=nl.shared_hbm) and return them)")
    return out


def custom_op(name: str, kernel: Optional[Callable] = None, /, *,
              fake: Callable,
              mutates_args: Union[str, Iterable[str]] = (),
              schema: Optional[str] = None,
              backward: Optional[Callable] = None,
              setup_context: Optional[Callable] = None,
              check_fake: bool = True):
    """Register ``kernel`` (an ``@nki.jit`` kernel, or a function launching
    kernels) as the torch operator ``torch.ops.<ns>.<name>``.

    Args:
        name: ``"namespace::name"`` as for ``torch.library.custom_op``.
        kernel: the kernel; omit to use ``custom_op`` as a decorator.
        fake: the fake (meta) implementation: same arguments, returns empty
            tensors of the output shapes and dtypes (``torch.empty_like``...).
            Required: without it ``torch.compile`` cannot trace the op.
        mutates_args: names of arguments the kernel writes into.
        schema: the op schema; inferred from the kernel's annotations if omitted.
        backward, setup_context: as ``torch.library.register_autograd``; the
            backward should call other NKI custom ops.
        check_fake: check the first eager call per input signature against ``fake``.

    Returns the ``torch.library.CustomOpDef`` (callable; ``.register_fake``,
    ``.register_autograd`` stay available).
    """
    if not isinstance(name, str) or name.count("::") != 1 or not all(name.split("::")):
        raise NkiOpError(f"nki.custom_op: name must look like 'namespace::name', got {name!r}")
    if not callable(fake):
        raise NkiOpError(f"nki.custom_op({name!r}): fake= must be a function returning the "
                         f"output tensors' shapes and dtypes, got {fake!r}")
    if setup_context is not None and backward is None:
        raise NkiOpError(f"nki.custom_op({name!r}): setup_context= given without backward=")
    if backward is not None and not callable(backward):
        raise NkiOpError(f"nki.custom_op({name!r}): backward= must be callable, got {backward!r}")

    def register(kernel: Callable):
        if not callable(kernel):
            raise NkiOpError(f"nki.custom_op({name!r}): kernel must be callable, got {kernel!r}")
        op_schema = schema if schema is not None else _infer_schema(name, kernel, mutates_args)
        checked: set = set()
        holder: dict = {}

        def impl(*args, **kwargs):
            argnames = holder["argnames"]
            _check_devices(name, argnames[:len(args)] + list(kwargs), args + tuple(kwargs.values()))
            out = _check_outputs(name, kernel(*args, **kwargs))
            if check_fake:
                key = _signature_key((args, kwargs))
                if key not in checked:
                    _check_against_fake(name, holder["op"]._opoverload, args, kwargs, out)
                    checked.add(key)
            return out

        opdef = torch.library.custom_op(name, impl, mutates_args=mutates_args, schema=op_schema)
        holder["op"] = opdef
        holder["argnames"] = [a.name for a in opdef._opoverload._schema.arguments]
        opdef.register_fake(fake)
        if backward is not None:
            opdef.register_autograd(backward, setup_context=setup_context)
        opdef.kernel = kernel
        opdef.__doc__ = getattr(kernel, "__doc__", None)
        return opdef

    if kernel is None:
        return register
    return register(kernel)
