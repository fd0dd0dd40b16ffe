#!/usr/bin/env bash
# The tool-calling recipe with SAW's gdpo baseline (saw_gdpo, dynamic=false); see run.sh for the environment variables.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" gdpo "$@"
