#!/usr/bin/env bash
# Mutation run over the routing mechanisms' defining code (dev script; see scripts/mutate.py).
# Usage: scripts/mutate_routing.sh OUTDIR [file-key ...]   (run from the repository root; one file at a time)
#        SURVIVORS_OF=EARLIER_OUTDIR scripts/mutate_routing.sh OUTDIR [key ...]   reruns only the earlier survivors
# Each row: file key | the lines mutated (the gate / forward / loss code, not validation or defaults) |
# the tests run per mutant (that mechanism's own test file; never in parallel).
set -u
out=${1:?usage: scripts/mutate_routing.sh OUTDIR [key ...]}; shift
mkdir -p "$out"
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
M=workbench/routing/mechanisms R=workbench/routing T=tests/routing
declare -A FILE LINES TESTS
row() { FILE[$1]=$2; LINES[$1]=$3; TESTS[$1]=$4; }
row smora         $M/smora.py         58,65-84              "$T/test_routing_smora.py"
row mixlora       $M/mixlora.py       78,97-127             "$T/test_routing_mixlora.py"
row loramoe       $M/loramoe.py       68,85-94,119-129      "$T/test_routing_loramoe.py"
row prompt_scaler $R/prompt_scaler.py 73-88,101-136         "$T/test_routing_prompt_scale.py"
row prompt_scale  $M/prompt_scale.py  46-66,100-116         "$T/test_routing_prompt_scale.py"
row tara          $M/tara.py          59-79,128-160         "$T/test_routing_tara.py"
row alora         $M/alora.py         49-55,80,86-111       "$T/test_routing_alora.py"
row reclora       $M/reclora.py       85-110                "$T/test_routing_reclora.py"
row mora          $M/mora.py          90-102                "$T/test_routing_mora.py"
row dmoerm        $R/dmoerm.py        41-56,80-82,130-151   "$T/test_routing_dmoerm.py"
row gates         $R/gates.py         19-58                 "$T/test_routing_gates.py $T/test_routing_smora.py"
row losses        $R/losses.py        44-63                 "$T/test_routing_mixlora.py $T/test_routing_core.py"
row flylora       $M/flylora.py       89,97-119             "$T/test_routing_flylora.py"
row meteora       $M/meteora.py       123-154,189-204       "$T/test_routing_meteora.py"
row lora_mixer    $M/lora_mixer.py    107-139               "$T/test_routing_lora_mixer.py"
row mask_routed   $M/mask_routed.py   95,105-119            "$T/test_routing_mask_routed.py"
keys=("$@")
[ ${#keys[@]} -eq 0 ] && keys=(smora mixlora loramoe prompt_scaler prompt_scale tara alora reclora mora dmoerm gates
                              losses flylora meteora lora_mixer mask_routed)
for k in "${keys[@]}"; do
  # shellcheck disable=SC2086
  only=()
  [ -n "${SURVIVORS_OF:-}" ] && only=(--survivors-of "$SURVIVORS_OF/$k.json")
  $PY scripts/mutate.py "${FILE[$k]}" --lines "${LINES[$k]}" "${only[@]}" --timeout "${TIMEOUT:-150}" --json "$out/$k.json" \
      --log "$out/$k.pytest.log" -- ${TESTS[$k]} -m "not slow and not browser" > "$out/$k.txt" 2>&1
  tail -n +1 "$out/$k.txt" | grep -A1 "mutants:" | head -2
done
