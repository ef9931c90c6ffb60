#!/usr/bin/env bash
# Make `snakemake --profile slurm` resolve from the repository root: Snakemake looks up a profile
# name in the current directory, then in ~/.config/snakemake/ (or $XDG_CONFIG_HOME/snakemake/).
# Link this checkout's profiles/slurm there unless a profile of that name already exists.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake"
link="$dir/slurm"
mkdir -p "$dir"
if [ -L "$link" ] && [ "$(readlink "$link")" = "$repo/profiles/slurm" ]; then
  exit 0
elif [ -L "$link" ] && [ ! -e "$link" ]; then
  ln -sfn "$repo/profiles/slurm" "$link"  # a link to a checkout that is gone
  echo "relinked SLURM profile: $link -> $repo/profiles/slurm"
elif [ -e "$link" ] || [ -L "$link" ]; then
  echo "note: $link already exists ($(readlink "$link" 2>/dev/null || echo 'not a link')); left as is." \
       "Use --profile $repo/profiles/slurm to use this checkout's profile."
else
  ln -s "$repo/profiles/slurm" "$link"
  echo "linked SLURM profile: $link -> $repo/profiles/slurm"
fi
