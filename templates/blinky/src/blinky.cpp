// {{name}}: product firmware for product {{product_id}}, version {{product_version}} ({{platform}}).
//
// The console rejects an upload whose version differs from the PRODUCT_VERSION compiled in, so
// bump PRODUCT_VERSION for every release and check it with
//     fwtool check-source . firmware.bin
#include "Particle.h"

{{product_id_block}}
PRODUCT_VERSION({{product_version}});

SYSTEM_THREAD(ENABLED);

const pin_t LED_PIN = D0;
const unsigned long BLINK_INTERVAL_MS = 300;

unsigned long lastToggle = 0;
bool ledOn = false;

void setup() {
    pinMode(LED_PIN, OUTPUT);
}

void loop() {
    // millis() instead of delay() keeps the system thread and cloud connection responsive.
    unsigned long now = millis();
    if (now - lastToggle >= BLINK_INTERVAL_MS) {
        lastToggle = now;
        ledOn = !ledOn;
        digitalWrite(LED_PIN, ledOn ? HIGH : LOW);
    }
}
