"""NB-IoT collectors: raw UDP frames, CoAP POSTs, and CTWing / OneNET HTTP pushes."""
