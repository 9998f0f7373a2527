"""Module paths for profiled ops: which ``nn.Module`` each op ran in.

While a profiler is active, global ``nn.Module`` forward pre/post hooks keep a
stack of qualified module names (``blocks.0.attn.qkv``) and tell the C++ core
the innermost one (``_C._set_scope``); every op it records carries that path.
All hooks are removed when the profiler exits, so nothing runs when not
profiling.

Backward is kept simple and cheap: when a module's forward returns, a
pre-hook is put on the autograd node that produced each output; when
backward reaches that node it sets the scope to ``"<path> (backward)"``, so
the backward ops of a module carry its path until backward reaches the next
hooked node. The nodes that made a module's inputs get the parent's scope
(first hook wins, so the innermost module owns a node), so a parent's own
ops between two children are attributed to the parent. A module forward that runs
during backward (activation-checkpoint recompute) gets ``"<path>
(recompute)"``. Optimizer steps get ``"optimizer.<class>"``; anything else
(the loss, code outside modules) gets ``""``.
"""
from __future__ import annotations

import threading
import weakref
from typing import Callable, Dict, List, Optional

import torch
from torch.utils._pytree import tree_leaves

from ._records import BACKWARD_SUFFIX, RECOMPUTE_SUFFIX


class ScopeTracker:
    """Installs the hooks on :meth:`start`, removes them on :meth:`stop`."""

    def __init__(self, set_scope: Callable[[str], None]):
        self._set_scope = set_scope
        self._stack: List[str] = []
        self._names: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()
        self._hooked_nodes: Dict[int, str] = {}
        self._handles: list = []
        self._lock = threading.Lock()
        self.active = False
        self._in_backward = False
        self._backward_scope = ""
        self._user_scopes: List[str] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        from torch.nn.modules import module as nn_module
        from torch.optim import optimizer as optim_module

        self.active = True
        self._handles = [
            nn_module.register_module_forward_pre_hook(self._forward_pre),
            nn_module.register_module_forward_hook(self._forward_post, always_call=True),
            optim_module.register_optimizer_step_pre_hook(self._optimizer_pre),
            optim_module.register_optimizer_step_post_hook(self._optimizer_post),
        ]
        self._set_scope(self.current())

    def stop(self) -> None:
        self.active = False
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._stack.clear()
        self._hooked_nodes.clear()
        self._in_backward = False
        self._set_scope("")

    def new_step(self) -> None:
        """Forgets per-step state (autograd nodes of the previous step)."""
        self._hooked_nodes.clear()

    def current(self) -> str:
        """The scope for ops issued now on the thread running forward."""
        if self._in_backward:
            return self._backward_scope
        if self._stack:
            return self._stack[-1]
        return self._user_scopes[-1] if self._user_scopes else ""

    # ------------------------------------------------------------------ user scopes
    def push_user(self, name: str) -> None:
        path = f"{self._stack[-1]}.{name}" if self._stack else name
        self._user_scopes.append(path)
        self._stack.append(path)
        self._set_scope(path)

    def pop_user(self) -> None:
        if self._user_scopes:
            path = self._user_scopes.pop()
            if path in self._stack:
                del self._stack[len(self._stack) - 1 - self._stack[::-1].index(path):]
        if self.active:
            self._set_scope(self.current())

    # ------------------------------------------------------------------ names
    def _name_of(self, module: torch.nn.Module) -> str:
        # torch.compile's wrapper is named as the module it compiles
        module = getattr(module, "_orig_mod", module)
        name = self._names.get(module)
        if name is not None:
            return name
        # A module not seen yet roots a tree of its own, named by its class
        # (as torch's ModTracker does): "GPT", "GPT.blocks.0.attn".
        root = type(module).__name__
        if self._stack:
            root = f"{self._stack[-1]}.{root}"
        self._names[module] = root
        for sub_name, sub in module.named_modules():
            if sub_name and sub not in self._names:
                self._names[sub] = f"{root}.{sub_name}"
        return root

    # ------------------------------------------------------------------ hooks
    # While dynamo traces, hooks do nothing (a C++ call would break the
    # graph): a compiled module's ops carry the compiled module's path.
    def _forward_pre(self, module, args):
        if not self.active or torch.compiler.is_compiling():
            return None
        name = self._name_of(module)
        if self._stack and not self._in_backward:
            # When backward reaches the node that made this module's input,
            # the module's backward is over: back to the parent's scope.
            self._hook_backward(args, self._stack[-1])
        if self._in_backward:
            name_scoped = name + RECOMPUTE_SUFFIX
        else:
            name_scoped = name
        self._stack.append(name_scoped)
        self._set_scope(name_scoped)
        return None

    def _forward_post(self, module, args, output):
        if not self.active or torch.compiler.is_compiling():
            return None
        if self._stack:
            path = self._stack.pop()
            if not self._in_backward:
                self._hook_backward(output, path)
        self._set_scope(self.current() if not (self._in_backward and self._stack)
                        else self._stack[-1])
        return None

    def _hook_backward(self, output, path: str) -> None:
        try:
            leaves = tree_leaves(output)
        except Exception:  # an exotic output type: no backward scope
            return
        scope = path + BACKWARD_SUFFIX
        for leaf in leaves:
            node = getattr(leaf, "grad_fn", None) if isinstance(leaf, torch.Tensor) else None
            if node is None or id(node) in self._hooked_nodes:
                continue  # the innermost module that produced the node keeps it
            self._hooked_nodes[id(node)] = scope
            try:
                node.register_prehook(self._make_backward_hook(scope))
            except RuntimeError:
                pass

    def _make_backward_hook(self, scope: str):
        tracker = weakref.ref(self)

        def hook(grad_outputs):
            me = tracker()
            if me is None or not me.active:
                return None
            me._backward_scope = scope
            if not me._in_backward:
                me._in_backward = True
                try:
                    torch.autograd.Variable._execution_engine.queue_callback(me._backward_done)
                except RuntimeError:
                    me._in_backward = False
            me._set_scope(scope)
            return None

        return hook

    def _backward_done(self) -> None:
        self._in_backward = False
        self._backward_scope = ""
        if self.active:
            self._set_scope(self.current())

    def _optimizer_pre(self, optimizer, args, kwargs):
        if self.active:
            self._set_scope(f"optimizer.{type(optimizer).__name__}")

    def _optimizer_post(self, optimizer, args, kwargs):
        if self.active:
            self._set_scope(self.current())
