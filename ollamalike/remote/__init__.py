"""Remote engines: models served by an external OpenAI-compatible engine (vLLM, llama-server,
SGLang, another ollamalike) that the scheduler treats as a runner.

- ``engine``: ``Engine``, the Modelfile's ENGINE line and its manifest layer;
- ``client``: ``RemoteRunner``, the runner-like HTTP client of one engine (RunnerLike), with the
  error mapping, the one retry before the first byte and the connect/read timeouts;
- ``sse``: the engine's server-sent events read into typed events;
- ``sampling``: Modelfile/request options onto the engine's sampling fields.

``inference/remote.py`` drives it from the inference service.
"""
