# Binary labels: 1 when f1 is large.
cat > train.csv <<'CSV'
f1,ans
0.1,0
0.2,0
0.3,0
0.4,0
0.5,0
2.0,1
3.0,1
4.0,1
CSV
printf 'f1\n0.25\n3.5\n' > predict.csv

dffml train -model scratchlgrsag_archive \
    -model-features f1:float:1 -model-predict ans:int:1 \
    -model-location model.zip \
    -sources f=csv -source-filename train.csv
dffml accuracy -model scratchlgrsag_archive \
    -model-features f1:float:1 -model-predict ans:int:1 \
    -model-location model.zip \
    -sources f=csv -source-filename train.csv

# Only the location is needed once the model is trained.
dffml predict all -model scratchlgrsag_archive -model-location model.zip \
    -sources f=csv -source-filename predict.csv
