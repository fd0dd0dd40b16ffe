#!/usr/bin/env bash
# The tool-calling recipe with the saw_grpo estimator; see run.sh for the environment variables.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" saw_grpo "$@"
