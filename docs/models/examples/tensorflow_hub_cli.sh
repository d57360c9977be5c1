# A text embedding: any TensorFlow Hub SavedModel mapping sentences to
# vectors.  Here a tiny one made on the spot (words hashed into 64 buckets,
# 8 numbers each), so that nothing is downloaded.
python - <<'PY'
import tensorflow as tf


class Embedding(tf.Module):
    def __init__(self):
        super().__init__()
        self.table = tf.Variable(tf.random.stateless_normal([64, 8], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        words = tf.strings.split(tf.strings.lower(text))
        buckets = tf.strings.to_hash_bucket_fast(words, 64)
        return tf.reduce_mean(tf.gather(self.table, buckets), axis=1)


tf.saved_model.save(Embedding(), "embedding")
PY

cat > reviews.csv <<'CSV'
sentence,sentiment
good great fine,1
great movie,1
really good,1
fine and good,1
wonderful great,1
good good,1
bad awful,0
terrible bad,0
awful movie,0
really bad,0
bad and terrible,0
awful awful,0
CSV
printf 'sentence\ngood movie\nterrible awful\n' > new.csv

dffml train -model text_classifier_archive \
    -model-features sentence:str:1 -model-predict sentiment:int:1 \
    -model-classifications 0 1 -model-clstype int -model-epochs 150 \
    -model-model_path "$PWD/embedding" -model-location reviews.zip \
    -sources f=csv -source-filename reviews.csv
dffml accuracy -model text_classifier_archive -model-location reviews.zip \
    -sources f=csv -source-filename reviews.csv

# The archive holds the trained network, embedding included: the
# embedding's directory is no longer needed.
rm -r embedding
mkdir -p shipped
mv reviews.zip shipped/
dffml predict all -model text_classifier_archive -model-location shipped/reviews.zip \
    -sources f=csv -source-filename new.csv
