# Train a model into an archive (absolute path: the dataflow may run anywhere).
printf 'x,y\n0,1\n1,3\n2,5\n3,7\n' > train.csv
dffml train -model slr_archive \
    -model-features x:float:1 -model-predict y:float:1 \
    -model-location "$PWD/model.tar.xz" \
    -sources f=csv -source-filename train.csv

# A dataflow predicting through DFFML's model_predict operation
# (dffml.model.predict, renamed "predict" here): the model is the archive.
dffml dataflow create predict=dffml.model.predict get_single \
    -inputs '["model_predictions"]=get_single_spec' \
    -config slr_archive=predict.model.plugin \
            "$PWD/model.tar.xz=predict.model.config.location" \
    > predict.json
dffml dataflow run single -dataflow predict.json \
    -inputs '{"x": 2.5}=record_features'
