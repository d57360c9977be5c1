# Will it rain?  Humidity (%) and air pressure (hPa) -> rain (1) or not (0).
cat > weather.csv <<'CSV'
humidity,pressure,rain
91,1001,1
45,1024,0
87,1004,1
30,1030,0
78,1008,1
52,1021,0
95,998,1
40,1027,0
83,1006,1
58,1018,0
CSV
printf 'humidity,pressure\n89,1003\n35,1026\n' > today.csv

# Two classes and no -model-objective: binary:logistic is chosen from the
# data (upstream's default objective, multi:softmax, fails on two classes).
dffml train -model xgbclassifier_archive \
    -model-features humidity:float:1 pressure:float:1 -model-predict rain:int:1 \
    -model-n_estimators 20 -model-location rain.tar.gz \
    -sources f=csv -source-filename weather.csv
# The archive holds the features and options: the location is enough.
dffml accuracy -model xgbclassifier_archive -model-location rain.tar.gz \
    -sources f=csv -source-filename weather.csv

mkdir -p shipped
mv rain.tar.gz shipped/
dffml predict all -model xgbclassifier_archive -model-location shipped/rain.tar.gz \
    -sources f=csv -source-filename today.csv
