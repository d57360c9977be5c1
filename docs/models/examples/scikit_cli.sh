# Three classes of points around (1, 1), (5, 1) and (3, 5).
cat > train.csv <<'CSV'
a,b,label
1.0,1.0,0
1.3,1.1,0
0.8,1.3,0
1.1,0.7,0
5.0,1.0,1
5.3,1.1,1
4.8,1.3,1
5.1,0.7,1
3.0,5.0,2
3.3,5.1,2
2.8,5.3,2
3.1,4.7,2
CSV
printf 'a,b\n1.2,0.9\n5.1,1.2\n2.9,4.9\n' > predict.csv

# Hyperparameters are -model-<name> options (here: k of k-nearest neighbours).
dffml train -model scikitknn_archive \
    -model-features a:float:1 b:float:1 -model-predict label:int:1 \
    -model-n_neighbors 3 -model-location knn.tar.zst \
    -sources f=csv -source-filename train.csv
# Accuracy is also the confidence of later predictions; it is stored in the
# archive, so it survives moving the archive.
dffml accuracy -model scikitknn_archive \
    -model-features a:float:1 b:float:1 -model-predict label:int:1 \
    -model-n_neighbors 3 -model-location knn.tar.zst \
    -sources f=csv -source-filename train.csv

mkdir -p shipped
mv knn.tar.zst shipped/
dffml predict all -model scikitknn_archive -model-location shipped/knn.tar.zst \
    -sources f=csv -source-filename predict.csv
