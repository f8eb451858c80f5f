"""Executor for parsed Go templates, with Ollama's helpers (identifier listing, cutting after ``.Response``).

Go semantics: missing map keys are nil (printed ``<no value>``), unknown struct fields are errors,
``and``/``or`` short-circuit, ``range`` walks maps in sorted key order. Execution is bounded
(output size, steps, template-call depth) so a pathological template cannot hang the daemon.
"""

from __future__ import annotations

import contextlib
import copy

from ollamalike.errors import BadRequest
from ollamalike.template.gofuncs import BUILTINS, FUNC_NAMES
from ollamalike.template.golex import template_error
from ollamalike.template.goparse import (
    Action,
    Arg,
    Branch,
    ChainNode,
    Command,
    DotNode,
    FieldNode,
    IdentNode,
    Literal,
    LoopControl,
    Node,
    Pipe,
    TemplateCall,
    Text,
    Tree,
    VarNode,
    parse_tree,
)
from ollamalike.template.govalues import ExecError, GoValue, Struct, print_value, sorted_keys, truth

MAX_OUTPUT = 32 * 1024 * 1024
MAX_STEPS = 1_000_000
MAX_DEPTH = 100


Scope = list[dict[str, GoValue]]


def _lookup(vars: Scope, name: str) -> GoValue:
    for frame in reversed(vars):
        if name in frame:
            return frame[name]
    raise ExecError(f'undefined variable "{name}"')


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class GoTemplate:
    """A parsed template. ``execute(data)`` returns the text; errors are ``BadRequest``."""

    def __init__(self, text: str, tree: Tree | None = None) -> None:
        self.text = text
        self.tree = tree if tree is not None else parse_tree(text, FUNC_NAMES)
        self._cut: GoTemplate | None = None

    def identifiers(self) -> set[str]:
        """Lower-cased field and variable names used anywhere (Ollama's ``Vars``)."""
        names: set[str] = set()
        for nodes in [self.tree.root, *self.tree.defines.values()]:
            _collect_idents(nodes, names)
        return names

    def cut_after_response(self) -> GoTemplate:
        """A copy that keeps everything up to and including the first ``.Response`` and drops the rest
        (Ollama renders the last turn of a legacy template this way, so a prefill stays open)."""
        if self._cut is None:
            root = _cut_list(copy.deepcopy(self.tree.root), {"cut": False})
            self._cut = GoTemplate(self.text, Tree(root, self.tree.defines))
        return self._cut

    def execute(self, data: GoValue) -> str:
        ex = _Executor(self.tree)
        with contextlib.suppress(_Break, _Continue):
            ex.walk_list(self.tree.root, data, [{"$": data}], 0)
        return "".join(ex.out)


def _collect_idents(nodes: list[Node], names: set[str]) -> None:
    for n in nodes:
        if isinstance(n, Action):
            _pipe_idents(n.pipe, names)
        elif isinstance(n, Branch):
            _pipe_idents(n.pipe, names)
            _collect_idents(n.body, names)
            if n.else_body:
                _collect_idents(n.else_body, names)
        elif isinstance(n, TemplateCall) and n.pipe is not None:
            _pipe_idents(n.pipe, names)


def _pipe_idents(pipe: Pipe, names: set[str]) -> None:
    for cmd in pipe.cmds:
        for a in cmd.args:
            if isinstance(a, FieldNode):
                names.update(x.lower() for x in a.chain)
            elif isinstance(a, VarNode):
                names.add(a.name.lower())
                names.update(x.lower() for x in a.chain)
            elif isinstance(a, ChainNode):
                _pipe_idents(a.pipe, names)
                names.update(x.lower() for x in a.chain)
            elif isinstance(a, Pipe):
                _pipe_idents(a, names)


def _is_response(arg: Arg) -> bool:
    return isinstance(arg, FieldNode) and "Response" in arg.chain


def _cut_list(nodes: list[Node], state: dict[str, bool]) -> list[Node]:
    kept: list[Node] = []
    for n in nodes:
        if state["cut"]:
            continue
        if isinstance(n, Action):
            pipe = _cut_pipe(n.pipe, state)
            if pipe is not None:
                kept.append(Action(pipe))
        elif isinstance(n, Branch):
            # As in Ollama, only the branch bodies are searched; a condition on .Response does not cut.
            n.body = _cut_list(n.body, state)
            if n.else_body is not None:
                n.else_body = _cut_list(n.else_body, state)
            kept.append(n)
        else:
            kept.append(n)
    return kept


def _cut_pipe(pipe: Pipe, state: dict[str, bool]) -> Pipe | None:
    cmds: list[Command] = []
    for cmd in pipe.cmds:
        args = []
        for a in cmd.args:
            if state["cut"]:
                continue
            if _is_response(a):
                state["cut"] = True
            args.append(a)
        if not args:
            return None
        cmds.append(Command(args, cmd.line))
    if not cmds:
        return None
    pipe.cmds = cmds
    return pipe


class _Executor:
    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.out: list[str] = []
        self.size = 0
        self.steps = 0

    def write(self, text: str, line: int) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            raise template_error(line, f"output exceeds {MAX_OUTPUT // (1024 * 1024)} MiB")
        self.out.append(text)

    def step(self, line: int) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise template_error(line, "template execution exceeds its step limit")

    def walk_list(self, nodes: list[Node], dot: GoValue, vars: Scope, depth: int) -> None:
        for node in nodes:
            self.walk(node, dot, vars, depth)

    def walk(self, node: Node, dot: GoValue, vars: Scope, depth: int) -> None:
        if isinstance(node, Text):
            self.write(node.text, 0)
            return
        if isinstance(node, Action):
            self.step(node.pipe.line)
            value = self.eval_pipe(node.pipe, dot, vars)
            if not node.pipe.decls:
                self.write(print_value(value), node.pipe.line)
            return
        if isinstance(node, Branch):
            self.step(node.pipe.line)
            self.walk_branch(node, dot, vars, depth)
            return
        if isinstance(node, LoopControl):
            raise _Break() if node.kind == "break" else _Continue()
        if isinstance(node, TemplateCall):
            body = self.tree.defines.get(node.name)
            if body is None:
                raise template_error(node.line, f'no such template "{node.name}"')
            if depth >= MAX_DEPTH:
                raise template_error(node.line, f"exceeded maximum template depth ({MAX_DEPTH})")
            new_dot = self.eval_pipe(node.pipe, dot, vars) if node.pipe is not None else None
            self.walk_list(body, new_dot, [{"$": new_dot}], depth + 1)

    def walk_branch(self, node: Branch, dot: GoValue, vars: Scope, depth: int) -> None:
        scope: Scope = [*vars, {}]
        if node.kind == "range":
            self.walk_range(node, dot, scope, depth)
        else:
            value = self.eval_pipe(node.pipe, dot, scope)
            if truth(value):
                self.walk_list(node.body, value if node.kind == "with" else dot, [*scope, {}], depth)
            elif node.else_body is not None:
                self.walk_list(node.else_body, dot, [*scope, {}], depth)

    def walk_range(self, node: Branch, dot: GoValue, scope: Scope, depth: int) -> None:
        line = node.pipe.line
        value = self.eval_pipe(node.pipe, dot, scope, declare=False)
        items: list[tuple[GoValue, GoValue]]
        if value is None:
            items = []
        elif isinstance(value, dict):
            items = [(k, value[k]) for k in sorted_keys(value)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if value > MAX_STEPS:
                raise template_error(line, "range exceeds the iteration limit")
            items = [(i, i) for i in range(value)]
        else:
            raise template_error(line, f"range can't iterate over {print_value(value)}")
        if not items:
            if node.else_body is not None:
                self.walk_list(node.else_body, dot, scope, depth)
            return
        decls = node.pipe.decls
        for key, elem in items:
            self.step(line)
            top = scope[-1]
            if len(decls) == 1:
                top[decls[0]] = elem
            elif len(decls) == 2:
                top[decls[0]] = key
                top[decls[1]] = elem
            try:
                self.walk_list(node.body, elem, [*scope, {}], depth)
            except _Break:
                break
            except _Continue:
                continue

    # ---- pipelines ------------------------------------------------------------------------

    def eval_pipe(self, pipe: Pipe, dot: GoValue, vars: Scope, declare: bool = True) -> GoValue:
        value: GoValue = None
        first = True
        for cmd in pipe.cmds:
            value = self.eval_command(cmd, dot, vars, value, has_final=not first)
            first = False
        if declare and pipe.decls:
            for name in pipe.decls:
                if pipe.is_assign:
                    for frame in reversed(vars):
                        if name in frame:
                            frame[name] = value
                            break
                else:
                    vars[-1][name] = value
        return value

    def eval_command(self, cmd: Command, dot: GoValue, vars: Scope, final: GoValue, has_final: bool) -> GoValue:
        head = cmd.args[0]
        try:
            if isinstance(head, IdentNode):
                return self.call(head.name, cmd, dot, vars, final, has_final)
            if isinstance(head, Literal) and head.value is None:
                raise ExecError("nil is not a command")
            if len(cmd.args) > 1 or has_final:
                raise ExecError(f"can't give argument to non-function {_describe(head)}")
            return self.eval_arg(head, dot, vars)
        except ExecError as e:
            raise template_error(cmd.line, f"executing: {e}") from None
        except RecursionError:
            raise template_error(cmd.line, "template nesting too deep") from None

    def call(self, name: str, cmd: Command, dot: GoValue, vars: Scope, final: GoValue, has_final: bool) -> GoValue:
        arg_nodes = cmd.args[1:]
        if name in ("and", "or"):
            # Go short-circuits: evaluate the arguments one at a time, the piped value last.
            if not arg_nodes and not has_final:
                raise ExecError(f"wrong number of args for {name}: want at least 1 got 0")
            value: GoValue = None
            for a in arg_nodes:
                value = self.eval_arg(a, dot, vars)
                if truth(value) != (name == "and"):
                    return value
            return final if has_final else value
        args = [self.eval_arg(a, dot, vars) for a in arg_nodes]
        if has_final:
            args.append(final)
        try:
            return BUILTINS[name](*args)
        except TypeError:
            raise ExecError(f"wrong number of args for {name}: got {len(args)}") from None

    def eval_arg(self, arg: Arg, dot: GoValue, vars: Scope) -> GoValue:
        if isinstance(arg, Literal):
            return arg.value
        if isinstance(arg, DotNode):
            return dot
        if isinstance(arg, FieldNode):
            return self.fields(dot, arg.chain)
        if isinstance(arg, VarNode):
            return self.fields(_lookup(vars, arg.name), arg.chain)
        if isinstance(arg, Pipe):
            return self.eval_pipe(arg, dot, vars)
        if isinstance(arg, ChainNode):
            return self.fields(self.eval_pipe(arg.pipe, dot, vars), arg.chain)
        if isinstance(arg, IdentNode):
            return self.call(arg.name, Command([arg], 0), dot, vars, None, False)
        raise ExecError(f"can't evaluate {arg!r}")

    def fields(self, value: GoValue, chain: list[str]) -> GoValue:
        for name in chain:
            if isinstance(value, dict):
                value = value.get(name)
            elif isinstance(value, Struct):
                if name not in value.fields:
                    raise ExecError(f"can't evaluate field {name} in type {value.type_name}")
                value = value.fields[name]
            elif value is None:
                raise ExecError(f"nil pointer evaluating interface {{}}.{name}")
            else:
                raise ExecError(f"can't evaluate field {name} in type {_type_of(value)}")
        return value


def _describe(arg: Arg) -> str:
    if isinstance(arg, Literal):
        return repr(arg.value)
    if isinstance(arg, FieldNode):
        return "." + ".".join(arg.chain)
    if isinstance(arg, VarNode):
        return arg.name + "".join("." + c for c in arg.chain)
    return "value"


def _type_of(value: GoValue) -> str:
    return {bool: "bool", int: "int", float: "float64", str: "string"}.get(type(value), "[]interface {}")


def parse_go_template(text: str) -> GoTemplate:
    """Parse; ``BadRequest("template: line N: …")`` on errors."""
    try:
        return GoTemplate(text)
    except RecursionError:
        raise BadRequest("template: nesting too deep") from None
