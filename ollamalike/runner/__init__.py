"""Runner processes: one per loaded model, serving llama.cpp over a Unix socket.

Only the modules in this package import ``llama_cpp``, and only those the runner process itself
loads (engine, sampling, server, smoke); ``client`` is the daemon's side and never imports it.
"""
