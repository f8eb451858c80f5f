"""DeepSeek, Cogito, OLMo, GLM and LFM2 renderers: each built-in renderer's exact prompt for one conversation with a system prompt, tools
(JSON escaping, a property key Ollama's types drop), an assistant turn with reasoning, text and two
tool calls (string, array and number arguments), and two tool results in a row. Written from the
formats Ollama's renderers (model/renderers/*.go) produce; think unset (each renderer's default)."""

from __future__ import annotations

import pytest

from ollamalike.template.renderers import RENDERERS
from tests.renderer_cases import TOOL_CHAT, TOOLS

EXPECTED: dict[str, str] = {
    'cogito': (
        '<｜begin▁of▁sentence｜>You are Cogito, an AI assistant created by Deep Cogito, which is an AI research lab based in San Francisco.\n'
        '\n'
        'Be terse.\n'
        'You have the following functions available:\n'
        '```json\n'
        '{\n'
        '    "type": "function",\n'
        '    "function": {\n'
        '        "name": "get_weather",\n'
        '        "description": "Weather \\u003cnow\\u003e \\u0026 soon",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        '            "required": [\n'
        '                "city"\n'
        '            ],\n'
        '            "properties": {\n'
        '                "city": {\n'
        '                    "type": "string",\n'
        '                    "description": "City name"\n'
        '                },\n'
        '                "unit": {\n'
        '                    "type": "string",\n'
        '                    "enum": [\n'
        '                        "c",\n'
        '                        "f"\n'
        '                    ]\n'
        '                }\n'
        '            }\n'
        '        }\n'
        '    }\n'
        '}\n'
        '```\n'
        '<｜User｜>Weather in Paris & Rome?<｜Assistant｜>Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n'
        '```json\n'
        '{"city":"Paris","unit":"c"}\n'
        '```<｜tool▁call▁end｜>\n'
        '<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n'
        '```json\n'
        '{"city":"Rome","days":[1,2]}\n'
        '```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>18C<｜tool▁output▁end｜>\n'
        '<｜tool▁output▁begin｜>windy<｜tool▁output▁end｜><｜tool▁outputs▁end｜><｜Assistant｜>'
    ),
    'deepseek3.1': (
        '<｜begin▁of▁sentence｜>Be terse.\n'
        '\n'
        '## Tools\n'
        'You have access to the following tools:\n'
        '\n'
        '### get_weather\n'
        'Description: Weather <now> & soon\n'
        '\n'
        'Parameters: {"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["c","f"]}}}\n'
        '\n'
        'IMPORTANT: ALWAYS adhere to this exact format for tool use:\n'
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜>{{additional_tool_calls}}<｜tool▁calls▁end｜>\n'
        '\n'
        'Where:\n'
        '\n'
        '- `tool_call_name` must be an exact match to one of the available tools\n'
        "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
        '- For multiple tool calls, chain them directly without separators or spaces\n'
        '<｜User｜>Weather in Paris & Rome?<｜Assistant｜></think>Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city":"Paris","unit":"c"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city":"Rome","days":[1,2]}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁output▁begin｜>18C<｜tool▁output▁end｜><｜tool▁output▁begin｜>windy<｜tool▁output▁end｜>'
    ),
    'olmo3': (
        '<|im_start|>system\n'
        'Be terse.<functions>[{"type": "function", "function": {"name": "get_weather", "description": "Weather \\u003cnow\\u003e \\u0026 soon", "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["c", "f"]}}}}}]</functions><|im_end|>\n'
        '<|im_start|>user\n'
        'Weather in Paris & Rome?<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Checking.<function_calls>get_weather(city="Paris", unit="c")\n'
        'get_weather(city="Rome", days=[1,2])</function_calls><|im_end|>\n'
        '<|im_start|>environment\n'
        '18C<|im_end|>\n'
        '<|im_start|>environment\n'
        'windy<|im_end|>\n'
        '<|im_start|>assistant\n'
    ),
    'olmo3.1': (
        '<|im_start|>system\n'
        'Be terse.<functions>[{"type": "function", "function": {"name": "get_weather", "description": "Weather \\u003cnow\\u003e \\u0026 soon", "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["c", "f"]}}}}}]</functions><|im_end|>\n'
        '<|im_start|>user\n'
        'Weather in Paris & Rome?<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Checking.<function_calls>get_weather(city="Paris", unit="c")\n'
        'get_weather(city="Rome", days=[1,2])</function_calls><|im_end|>\n'
        '<|im_start|>environment\n'
        '18C<|im_end|>\n'
        '<|im_start|>environment\n'
        'windy<|im_end|>\n'
        '<|im_start|>assistant\n'
    ),
    'olmo3-think': (
        '<|im_start|>system\n'
        'Be terse. You do not currently have access to any functions. <functions></functions><|im_end|>\n'
        '<|im_start|>user\n'
        'Weather in Paris & Rome?<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Checking.<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>'
    ),
    'olmo3-32b-think': (
        '<|im_start|>system\n'
        'Be terse. You do not currently have access to any functions. <functions></functions><|im_end|>\n'
        '<|im_start|>user\n'
        'Weather in Paris & Rome?<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Checking.<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>'
    ),
    'glm-4.7': (
        '[gMASK]<sop><|system|>\n'
        '# Tools\n'
        '\n'
        'You may call one or more functions to assist with the user query.\n'
        '\n'
        'You are provided with function signatures within <tools></tools> XML tags:\n'
        '<tools>\n'
        '{"type": "function", "function": {"name": "get_weather", "description": "Weather \\u003cnow\\u003e \\u0026 soon", "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["c", "f"]}}}}}\n'
        '</tools>\n'
        '\n'
        'For each function call, output the function name and arguments within the following XML format:\n'
        '<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>{arg-value-1}</arg_value><arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>...</tool_call><|system|>Be terse.<|user|>Weather in Paris & Rome?<|assistant|><think>use the tool</think>Checking.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>unit</arg_key><arg_value>c</arg_value></tool_call><tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value><arg_key>days</arg_key><arg_value>[1,2]</arg_value></tool_call><|observation|><tool_response>18C</tool_response><tool_response>windy</tool_response><|assistant|><think>'
    ),
    'lfm2': (
        '<|startoftext|><|im_start|>system\n'
        'Be terse.\n'
        'List of tools: <|tool_list_start|>[{"name": "get_weather", "description": "Weather <now> & soon", "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["c", "f"]}}}}]<|tool_list_end|><|im_end|>\n'
        '<|im_start|>user\n'
        'Weather in Paris & Rome?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<|tool_call_start|>[get_weather(city="Paris",unit="c"),get_weather(city="Rome",days=[1, 2])]<|tool_call_end|>\n'
        'Checking.<|im_end|>\n'
        '<|im_start|>tool\n'
        '<|tool_response_start|>18C<|tool_response_end|><|im_end|>\n'
        '<|im_start|>tool\n'
        '<|tool_response_start|>windy<|tool_response_end|><|im_end|>\n'
        '<|im_start|>assistant\n'
    ),
    'lfm2-thinking': (
        '<|startoftext|><|im_start|>system\n'
        'Be terse.\n'
        'List of tools: <|tool_list_start|>[{"name": "get_weather", "description": "Weather <now> & soon", "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string", "description": "City name"}, "unit": {"type": "string", "enum": ["c", "f"]}}}}]<|tool_list_end|><|im_end|>\n'
        '<|im_start|>user\n'
        'Weather in Paris & Rome?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>use the tool</think><|tool_call_start|>[get_weather(city="Paris",unit="c"),get_weather(city="Rome",days=[1, 2])]<|tool_call_end|>\n'
        'Checking.<|im_end|>\n'
        '<|im_start|>tool\n'
        '<|tool_response_start|>18C<|tool_response_end|><|im_end|>\n'
        '<|im_start|>tool\n'
        '<|tool_response_start|>windy<|tool_response_end|><|im_end|>\n'
        '<|im_start|>assistant\n'
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tool_conversation(name: str) -> None:
    assert RENDERERS[name](TOOL_CHAT, TOOLS, None) == EXPECTED[name]
