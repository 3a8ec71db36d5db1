"""Text generation (one-to-many, character level): a prompt is read by a prefill graph or through the
shared step calls, then one decoder step per character for every running request at once (the step
scheduler of ``service.scheduler``), streamed as Server-Sent Events or answered whole."""
