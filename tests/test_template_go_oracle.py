"""Differential check against the real Go text/template (skipped where no Go toolchain is installed):
our named templates and Ollama's reference templates, over several conversations (tools included),
must render byte-identical to Go's output for the same data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ollamalike.template import named_template, named_templates
from ollamalike.template.render import execute
from ollamalike.template.values import collate, normalize_messages

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="no Go toolchain")

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "ollama-templates"

# The Go side mirrors Ollama's template types: messages, tool calls with JSON-printing arguments,
# tools with JSON-printing String(), PropertyType printing as its single type.
GO_ORACLE = r'''package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"
)

type PropertyType []string

func (pt PropertyType) MarshalJSON() ([]byte, error) {
	if len(pt) == 1 {
		return json.Marshal(pt[0])
	}
	return json.Marshal([]string(pt))
}
func (pt PropertyType) String() string {
	if len(pt) == 0 {
		return ""
	}
	if len(pt) == 1 {
		return pt[0]
	}
	return fmt.Sprintf("%v", []string(pt))
}

type ToolProperty struct {
	AnyOf       []ToolProperty `json:"anyOf,omitempty"`
	Type        PropertyType   `json:"type,omitempty"`
	Items       any            `json:"items,omitempty"`
	Description string         `json:"description,omitempty"`
	Enum        []any          `json:"enum,omitempty"`
	Properties  *props         `json:"properties,omitempty"`
	Required    []string       `json:"required,omitempty"`
}
type props map[string]ToolProperty

func (t props) String() string { b, _ := json.Marshal(map[string]ToolProperty(t)); return string(b) }

type params struct {
	Type       string   `json:"type"`
	Defs       any      `json:"$defs,omitempty"`
	Items      any      `json:"items,omitempty"`
	Required   []string `json:"required,omitempty"`
	Properties props    `json:"properties"`
}
type toolFn struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Parameters  params `json:"parameters"`
}
type tool struct {
	Type     string `json:"type"`
	Items    any    `json:"items,omitempty"`
	Function toolFn `json:"function"`
}

func (t tool) String() string { b, _ := json.Marshal(t); return string(b) }

type tools []tool

func (t tools) String() string { b, _ := json.Marshal(t); return string(b) }

type args map[string]any

func (a args) String() string {
	if a == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]any(a))
	return string(b)
}

type callFn struct {
	Index     int
	Name      string
	Arguments args
}
type call struct {
	ID       string
	Function callFn
}
type msg struct {
	Role       string
	Content    string
	Thinking   string
	Images     []string
	ToolCalls  []call
	ToolName   string
	ToolCallID string
}

type job struct {
	Key      string          `json:"key"`
	Template string          `json:"template"`
	System   string          `json:"system"`
	Messages []msg           `json:"messages"`
	Tools    json.RawMessage `json:"tools"`
}

func main() {
	raw, _ := os.ReadFile(os.Args[1])
	var jobs []job
	if err := json.Unmarshal(raw, &jobs); err != nil {
		panic(err)
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	out := map[string]string{}
	for _, j := range jobs {
		t, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(j.Template)
		if err != nil {
			out[j.Key] = "PARSE ERROR: " + err.Error()
			continue
		}
		var ts tools
		if len(j.Tools) > 0 && string(j.Tools) != "null" {
			var rawTools []struct {
				Type     string `json:"type"`
				Function struct {
					Name        string `json:"name"`
					Description string `json:"description"`
					Parameters  struct {
						Type       string   `json:"type"`
						Required   []string `json:"required"`
						Properties map[string]struct {
							Type        string `json:"type"`
							Description string `json:"description"`
						} `json:"properties"`
					} `json:"parameters"`
				} `json:"function"`
			}
			json.Unmarshal(j.Tools, &rawTools)
			for _, rt := range rawTools {
				p := props{}
				for k, v := range rt.Function.Parameters.Properties {
					p[k] = ToolProperty{Type: PropertyType{v.Type}, Description: v.Description}
				}
				ts = append(ts, tool{Type: rt.Type, Function: toolFn{Name: rt.Function.Name, Description: rt.Function.Description,
					Parameters: params{Type: rt.Function.Parameters.Type, Required: rt.Function.Parameters.Required, Properties: p}}})
			}
		}
		ms := []*msg{}
		for i := range j.Messages {
			ms = append(ms, &j.Messages[i])
		}
		data := map[string]any{"System": j.System, "Messages": ms, "Tools": ts, "Response": "", "Think": false, "ThinkLevel": "", "IsThinkSet": false}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			out[j.Key] = "EXEC ERROR: " + err.Error()
			continue
		}
		out[j.Key] = b.String()
	}
	enc, _ := json.Marshal(out)
	fmt.Println(string(enc))
}
'''

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather <for> a city", "parameters": {
    "type": "object", "required": ["city"], "properties": {"city": {"type": "string", "description": "City name"},
                                                           "days": {"type": "integer", "description": "Days"}}}}}]
EXCHANGE = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
            {"role": "user", "content": "How are you?"}]
CONVERSATIONS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = {
    "single": ([{"role": "user", "content": "Hello"}], None),
    "exchange": (EXCHANGE, None),
    "system": ([{"role": "system", "content": "Be brief."}, *EXCHANGE], None),
    "merged": ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], None),
    "prefill": ([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Sure"}], None),
    "tools": ([{"role": "system", "content": "S"}, {"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {
                   "city": "Paris", "n": 2.5, "z": [1, "a&b"]}}}]},
               {"role": "tool", "content": "22C", "tool_name": "get_weather"}], TOOLS),
}


# Printing Ollama's template values directly (Go's %v of structs, Stringer fields, nil slices).
VALUE_PRINTING = (
    "{{ range .Tools }}{{ .Function }}|{{ range $k, $p := .Function.Parameters.Properties }}{{ $k }}={{ $p }};"
    "{{ $p.Type }};{{ end }}{{ .Function.Parameters.Properties }}{{ end }}\n"
    "{{ range .Messages }}{{ . }}|{{ len .ToolCalls }}|{{ range .ToolCalls }}{{ . }}{{ .Function }}{{ end }}\n{{ end }}"
    "{{ json .Messages }}\n{{ .Tools }}\n{{ json .Tools }}\n{{ printf \"%v|%s|%q\" .System .System .System }}"
)


def _templates() -> dict[str, str]:
    found = {f"named/{n}": named_template(n).template for n in named_templates()}
    found["values"] = VALUE_PRINTING
    if REFERENCE.is_dir():
        found.update({f"ref/{p.name}": p.read_text() for p in sorted(REFERENCE.glob("*.gotmpl"))})
    return found


def test_renders_match_go(tmp_path: Path) -> None:
    jobs = []
    ours: dict[str, str] = {}
    for tname, text in _templates().items():
        for cname, (messages, tools) in CONVERSATIONS.items():
            msgs = normalize_messages(messages)
            system, collated = collate(msgs)
            key = f"{tname}|{cname}"
            jobs.append({"key": key, "template": text, "system": system, "tools": tools, "messages": [
                {"Role": m["role"], "Content": m["content"], "ToolName": m.get("tool_name", ""),
                 "ToolCalls": [{"Function": {"Name": c["function"]["name"], "Arguments": c["function"]["arguments"]}}
                               for c in m["tool_calls"]] or None} for m in collated]})
            ours[key] = execute(text, msgs, tools or [], {"Think": False, "ThinkLevel": "", "IsThinkSet": False})
    (tmp_path / "main.go").write_text(GO_ORACLE)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(tmp_path / "gopath"),
               GOCACHE=os.environ.get("GOCACHE") or str(tmp_path / "gocache"))
    result = subprocess.run(["go", "run", "main.go", "jobs.json"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    go = json.loads(result.stdout)
    differing = [k for k in ours if go[k] != ours[k]]
    assert not differing, "\n".join(f"{k}:\n go:   {go[k]!r}\n ours: {ours[k]!r}" for k in differing[:3])
    assert len(ours) >= 19 * len(CONVERSATIONS)
