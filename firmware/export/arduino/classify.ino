// Classifies each line typed in the serial monitor (115200 baud, newline ending) with the
// mcutext model "@MODEL@", and prints the label, its score and the words the model read.
#include <mcutext.h>

static char line[256];
static size_t len = 0;

void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
  if (mcutext_init() != 0) {
    Serial.println("mcutext_init failed");
  }
  Serial.println("ready: type a sentence");
}

void loop() {
  while (Serial.available() > 0) {
    int c = Serial.read();
    if (c == '\r') {
      continue;
    }
    if (c != '\n') {
      if (len < sizeof(line)) {
        line[len++] = (char)c;
      }
      continue;
    }
    mcutext_result_t r;
    int label = mcutext_classify(line, len, &r);
    len = 0;
    if (label < 0) {
      Serial.println("error");
      continue;
    }
    Serial.print(mcutext_label(label));
    Serial.print('\t');
    Serial.print(mcutext_score(&r, label), 3);
    Serial.print('\t');
    Serial.println(r.words);
  }
}
