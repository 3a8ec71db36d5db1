"""Text generation serving: sampling, the step-level batching scheduler and the task plug-in."""
