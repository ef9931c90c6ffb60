#!/usr/bin/env bash
# A single-node SLURM on this machine, for CI and for trying the cluster path before a real
# cluster: Debian's slurmctld, slurmd and munge (Slurm 22.05), no accounting database, and fake
# GPUs (GRES backed by links to /dev/null) so GPU jobs are scheduled as on a GPU node, though
# code inside them sees no CUDA device.
#
#   bash profiles/local_slurm.sh up      install the packages when missing (apt-get, as root), write
#                                        the configuration, start munged, slurmctld and slurmd, wait
#                                        until the node takes jobs
#   bash profiles/local_slurm.sh down    cancel every job, stop the daemons (jobs outlive slurmd
#                                        under proctrack/linuxproc, so they are cancelled first)
#   bash profiles/local_slurm.sh status  sinfo and squeue
#
# Everything lives under $PROTSAE_SLURM_DIR (default /tmp/protsae-slurm): slurm.conf, gres.conf,
# the daemons' state and logs, and jobs.log, the record of every finished job (jobcomp/filetxt,
# since there is no accounting database). PROTSAE_SLURM_GPUS fake GPUs (default 2). Clients find
# the configuration at Slurm's default path, /etc/slurm/slurm.conf, linked to the one here (the
# jobs' own srun does not see SLURM_CONF); the script refuses to replace a configuration of another
# Slurm there.
set -euo pipefail

DIR=${PROTSAE_SLURM_DIR:-/tmp/protsae-slurm}
GPUS=${PROTSAE_SLURM_GPUS:-2}
CONF="$DIR/slurm.conf"
PACKAGES="slurmctld slurmd slurm-client munge"

die() { echo "local_slurm: $*" >&2; exit 1; }

install_packages() {
  local missing=""
  for cmd in slurmctld slurmd sbatch munged; do
    command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || missing="$missing $cmd"
  done
  [ -z "$missing" ] && return 0
  [ -f /etc/debian_version ] || die "missing:$missing; install Slurm and MUNGE with your package manager"
  [ "$(id -u)" = 0 ] || die "missing:$missing; run as root to install $PACKAGES with apt-get"
  echo "local_slurm: installing $PACKAGES with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES >/dev/null
}

write_config() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  # What the node offers jobs: its memory less 1 GB for the daemons and the snakemake that submits.
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  mkdir -p "$DIR/ctld" "$DIR/d" "$DIR/gpus"
  local gres_lines="" node_gres="" i
  for i in $(seq 0 $((GPUS - 1))); do
    ln -sfn /dev/null "$DIR/gpus/gpu$i"  # slurmd refuses a plain file as a GPU's device
    gres_lines+="Name=gpu File=$DIR/gpus/gpu$i"$'\n'
  done
  [ "$GPUS" -gt 0 ] && node_gres="Gres=gpu:$GPUS"
  cat >"$CONF.tmp" <<EOF
# Written by profiles/local_slurm.sh: one node, no accounting database.
ClusterName=protsae
# The loopback address, whether or not the host name resolves.
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue and scontrol for an hour (the job records, GPUs included,
# that the tests read; jobs.log keeps no GRES). Snakemake's squeue status check also needs
# MinJobAge >= 3 x slurm-init-seconds-before-status-checks, or it silently goes back to sacct.
MinJobAge=3600
# sbatch refuses a job larger than the node instead of leaving it PENDING forever.
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/none
# Memory is enforced by polling each job's processes every second (no cgroups here): a job over
# its --mem is killed and ends OUT_OF_MEMORY.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobs.log
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem $node_gres State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
  printf 'AutoDetect=off\n%s' "$gres_lines" >"$DIR/gres.conf"
  mkdir -p /etc/slurm
  local name
  for name in slurm.conf gres.conf; do
    if [ -e "/etc/slurm/$name" ] && [ "$(readlink "/etc/slurm/$name")" != "$DIR/$name" ]; then
      die "/etc/slurm/$name is another Slurm's configuration; left as is (move it away to use this one)"
    fi
    ln -sfn "$DIR/$name" "/etc/slurm/$name"
  done
}

start_munge() {
  if pgrep -x munged >/dev/null; then return 0; fi
  [ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create --force 2>/dev/null || \
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
}

up() {
  install_packages
  [ "$(id -u)" = 0 ] || die "slurmctld and slurmd run as root here; run as root"
  if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    echo "local_slurm: already up ($CONF)"; return 0
  fi
  write_config
  start_munge
  /usr/sbin/slurmctld -c  # -c: start clean, no jobs from an earlier run
  /usr/sbin/slurmd
  local i
  for i in $(seq 1 60); do
    # slurmctld exits at once on a configuration it refuses; its log says why.
    if [ -f "$DIR/slurmctld.pid" ] && ! kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then break; fi
    if timeout 5 sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "local_slurm: up: $(sinfo -h -o '%n %c CPUs, %m MB, %G, %t')"
      return 0
    fi
    sleep 0.5
  done
  tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
  down >/dev/null
  die "the node did not come up (logs above, under $DIR)"
}

down() {
  if [ -f "$CONF" ] && command -v scancel >/dev/null; then
    timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 20); do
      [ -z "$(timeout 5 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null || true)" ] && break
      sleep 0.5
    done
  fi
  local daemon
  for daemon in slurmd slurmctld; do
    if [ -f "$DIR/$daemon.pid" ]; then
      kill "$(cat "$DIR/$daemon.pid")" 2>/dev/null || true
      rm -f "$DIR/$daemon.pid"
    fi
  done
  echo "local_slurm: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo; squeue ;;
  *) die "usage: $0 up | down | status" ;;
esac
