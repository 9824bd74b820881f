"""The suite's options, recorder, report and gate live in compress.pytest_plugin."""

pytest_plugins = ["compress.pytest_plugin"]
