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

# auto-sklearn searches until its budget is spent (at least 30 s); here it
# stops after the first pipeline (smac_scenario_args runcount_limit 1).
dffml train -model autoclassifier_archive \
    -model-features a:float:1 b:float:1 -model-predict label:int:1 \
    -model-time_left_for_this_task 30 -model-per_run_time_limit 10 \
    -model-initial_configurations_via_metalearning 0 \
    -model-smac_scenario_args "{'runcount_limit': 1}" \
    -model-location blobs.tar.gz \
    -sources f=csv -source-filename train.csv
dffml accuracy -model autoclassifier_archive -model-location blobs.tar.gz \
    -sources f=csv -source-filename train.csv

mkdir -p shipped
mv blobs.tar.gz shipped/
# The confidence is the probability of the predicted class.
dffml predict all -model autoclassifier_archive -model-location shipped/blobs.tar.gz \
    -sources f=csv -source-filename predict.csv
