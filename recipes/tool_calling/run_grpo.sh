#!/usr/bin/env bash
# The tool-calling recipe with SAW's grpo baseline (saw_grpo, dynamic=false); see run.sh for the environment variables.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" grpo "$@"
