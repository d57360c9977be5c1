# Spam or not, from the words of the subject and the number of links.
cat > mail.csv <<'CSV'
subject,links,spam
win money now,9,1
meeting notes for monday,0,0
cheap pills win big,7,1
lunch on friday,1,0
claim your free prize now,8,1
quarterly report draft,2,0
free money click here,10,1
notes from the review,1,0
you win a free cruise,6,1
agenda for the offsite,0,0
CSV
printf 'subject,links\nfree prize inside,7\nnotes on the agenda,1\n' > inbox.csv

# Two classes as -1 and 1 (logistic loss), ten passes, the subject's words in
# namespace s and the links in namespace n, and VW's own --l2 0.00001.
dffml train -model vwmodel_archive \
    -model-features subject:str:1 links:int:1 -model-predict spam:int:1 \
    -model-use_binary_label -model-passes 10 \
    -model-namespace s=subject n=links -model-vwcmd l2 0.00001 \
    -model-location spam.zip \
    -sources f=csv -source-filename mail.csv
# The accuracy is stored in the archive: the confidence of later predictions.
dffml accuracy -model vwmodel_archive -model-location spam.zip \
    -sources f=csv -source-filename mail.csv

mkdir -p shipped
mv spam.zip shipped/
dffml predict all -model vwmodel_archive -model-location shipped/spam.zip \
    -sources f=csv -source-filename inbox.csv
