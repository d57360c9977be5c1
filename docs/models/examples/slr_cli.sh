# Training data: y = 2x + 1.  Data to predict: x only.
cat > train.csv <<'CSV'
x,y
0,1
1,3
2,5
3,7
4,9
CSV
cat > predict.csv <<'CSV'
x
2.5
20
CSV

# Train into one archive file, then assess it.
dffml train -model slr_archive \
    -model-features x:float:1 -model-predict y:float:1 \
    -model-location model.tar.gz \
    -sources f=csv -source-filename train.csv
dffml accuracy -model slr_archive \
    -model-features x:float:1 -model-predict y:float:1 \
    -model-location model.tar.gz \
    -sources f=csv -source-filename train.csv

# The archive holds the model and its configuration: move it anywhere and
# predict with the location alone.
mkdir -p shipped
mv model.tar.gz shipped/
dffml predict all -model slr_archive -model-location shipped/model.tar.gz \
    -sources f=csv -source-filename predict.csv
