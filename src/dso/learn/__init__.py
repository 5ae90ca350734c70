"""Active Semantic Optimization: the Training-Free GRPO loop that turns rollouts into experiences."""
