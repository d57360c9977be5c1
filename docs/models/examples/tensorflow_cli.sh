# Two kinds of flowers by petal length and width (cm): 0 small, 1 large.
cat > flowers.csv <<'CSV'
length,width,kind
1.4,0.2,0
1.3,0.3,0
1.5,0.2,0
1.7,0.4,0
1.6,0.3,0
1.2,0.2,0
5.1,1.8,1
4.9,1.6,1
5.6,2.1,1
5.4,2.0,1
6.0,2.3,1
5.0,1.9,1
CSV
printf 'length,width\n1.5,0.3\n5.5,2.0\n' > unknown.csv

# -model-clstype int: the classes are the integers 0 and 1.
dffml train -model tfdnnc_archive \
    -model-features length:float:1 width:float:1 -model-predict kind:int:1 \
    -model-classifications 0 1 -model-clstype int \
    -model-hidden 32 32 -model-epochs 200 -model-location flowers.tar.xz \
    -sources f=csv -source-filename flowers.csv
# Options given again must be the recorded ones (here all of them are).
dffml accuracy -model tfdnnc_archive \
    -model-features length:float:1 width:float:1 -model-predict kind:int:1 \
    -model-classifications 0 1 -model-clstype int \
    -model-hidden 32 32 -model-epochs 200 -model-location flowers.tar.xz \
    -sources f=csv -source-filename flowers.csv

mkdir -p shipped
mv flowers.tar.xz shipped/
dffml predict all -model tfdnnc_archive -model-location shipped/flowers.tar.xz \
    -sources f=csv -source-filename unknown.csv
