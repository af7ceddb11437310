#!/bin/sh
# The commands behind the JSON files of this folder (docs/geometry.md §5–§7), run from the
# repository root with the MNIST files found (leafscope's data search path, or --data-dir).
set -e
L="leafscope"
D="--dataset mnist --split test --no-progress"
# models
$L train --dataset mnist --model lenet --activation relu --epochs 1 --limit 20000 --momentum 0.9 --out runs/lenet-relu
for s in 0 1 2; do
  $L train --dataset mnist --model lenet --activation relu --epochs 3 --momentum 0.9 --seed $s --out runs/lenet-relu-3ep-s$s
done
$L train --dataset mnist --model lenet --activation gelu --optimizer adam --lr 1e-3 --epochs 1 --limit 20000 --out runs/lenet-gelu-adam
# curvature (the bar command), three models
for m in relu:runs/lenet-relu/epoch_0001.pt relu3s0:runs/lenet-relu-3ep-s0/epoch_0003.pt gelu:runs/lenet-gelu-adam/epoch_0001.pt; do
  $L curvature --checkpoint ${m#*:} $D --points 8 --dtype float64 --json curv_${m%%:*}.json
done
# attacks: 500 points, eight budgets
for m in relu1ep:runs/lenet-relu/epoch_0001.pt relu3s0:runs/lenet-relu-3ep-s0/epoch_0003.pt relu3s1:runs/lenet-relu-3ep-s1/epoch_0003.pt relu3s2:runs/lenet-relu-3ep-s2/epoch_0003.pt gelu1ep:runs/lenet-gelu-adam/epoch_0001.pt; do
  $L attack --checkpoint ${m#*:} $D --points 500 --methods ossa,tssa,fgsm,fgsm2 --budgets 0.25,0.5,1,1.5,2,3,4,6 --seeds 1 --no-keep-images --json ${m%%:*}_500.json
done
for s in 0 1 2; do
  $L attack --checkpoint runs/lenet-relu-3ep-s$s/epoch_0003.pt $D --points 500 --methods pgd --budgets 0.5,1,2,4 --seeds 3 --no-keep-images --json relu3s${s}_pgd.json
done
for r in 0.3 0.5 0.8; do
  $L attack --checkpoint runs/lenet-relu/epoch_0001.pt $D --points 500 --methods tssa --tssa-ratio $r --budgets 1,2,3 --seeds 1 --no-keep-images --json relu1ep_ratio$r.json
done
# the bar command (figures: OUT/_files/fooling_rate.png, copied here as bar_*_fooling_rate.png)
$L attack --checkpoint runs/lenet-relu/epoch_0001.pt $D --points 64 --methods ossa,tssa,fgsm,pgd --budgets 0.5,1,2,4 --json bar_relu1ep.json --out runs/bar_relu1ep
$L attack --checkpoint runs/lenet-relu-3ep-s0/epoch_0003.pt $D --points 64 --methods ossa,tssa,fgsm,pgd --budgets 0.5,1,2,4 --json bar_relu3s0.json --out runs/bar_relu3s0
# adversarial detection
$L adversarial --checkpoint runs/lenet-relu/epoch_0001.pt $D --points 300 --attacks pgd,ossa --budget 2 --seeds 3 --json adv_relu1ep.json
$L adversarial --checkpoint runs/lenet-relu-3ep-s0/epoch_0003.pt $D --points 300 --attacks pgd,ossa --budget 2 --seeds 3 --json adv_relu3s0.json
$L adversarial --checkpoint runs/lenet-gelu-adam/epoch_0001.pt $D --points 300 --attacks pgd,ossa --budget 2 --seeds 3 --leaf-curvature --json adv_gelu.json
