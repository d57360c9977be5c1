# Points on the line y = 1.5 x + 2.
printf 'x,y\n0,2\n1,3.5\n2,5\n3,6.5\n4,8\n5,9.5\n6,11\n7,12.5\n' > line.csv
printf 'x\n10\n4.5\n' > new.csv

dffml train -model daal4pylr_archive \
    -model-features x:float:1 -model-predict y:float:1 \
    -model-location line.tar.xz \
    -sources f=csv -source-filename line.csv
# Accuracy: the fraction of records predicted within 0.1 of their value.
dffml accuracy -model daal4pylr_archive -model-location line.tar.xz \
    -sources f=csv -source-filename line.csv

mkdir -p shipped
mv line.tar.xz shipped/
dffml predict all -model daal4pylr_archive -model-location shipped/line.tar.xz \
    -sources f=csv -source-filename new.csv
