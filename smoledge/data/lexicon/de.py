"""German grammar of the sample corpus (format: smoledge.data.lexicon).

German inflects noun phrases by case, so rules that need one case carry it
in their name (`_acc`, `_dat`, `_in` for a ready-made "in + dative" phrase),
and templates that front an adverbial put the verb second.
"""

COMMON = {
    "name": "Anna|Lukas|Lena|Jonas|Marie|Felix|Hannah|Paul|Sophie|Jan|Katrin|Tobias|Julia|Moritz|Jörg|Sabine",
    "surname": "Müller|Schmidt|Schneider|Fischer|Weber|Meyer|Wagner|Becker|Hoffmann|Schäfer|Koch|Richter",
    "person": [
        "{name}", "{name} {surname}", "mein Nachbar", "unsere Lehrerin", "der alte Bäcker", "meine Schwester",
        "eine junge Journalistin", "der Bürgermeister", "mein Großvater", "ein Freund aus der Schulzeit",
        "die neue Ärztin", "meine Kollegin", "der Ladenbesitzer", "ein Landwirt aus der Gegend", "meine Tante",
        "die Schulleiterin",
    ],
    "people": "viele Familien|die Anwohner|die Touristen|die meisten Besucher|junge Leute|die Kinder|"
              "unsere Nachbarn|die Studierenden|ältere Menschen|die Ladenbesitzer|viele Leser",
    "city": "Berlin|Hamburg|München|Köln|Frankfurt|Stuttgart|Düsseldorf|Leipzig|Dresden|Nürnberg|Bremen|Freiburg",
    "place": "Lissabon|Rom|Wien|Prag|Barcelona|Amsterdam|Kopenhagen|Dublin|Athen|Krakau|Sevilla|Florenz|"
             "Porto|Paris|Zürich",
    "day": "Montag|Dienstag|Mittwoch|Donnerstag|Freitag|Samstag|Sonntag",
    "month": "Januar|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember",
    "season": "im Frühling|im Sommer|im Herbst|im Winter",
    "ordinal": "ersten|zweiten|dritten|vierten|fünften|sechsten|siebten|achten",
    "when_past": [
        "gestern", "letzte Woche", "am {day}", "letzten {day}", "am {day_num}. {month}", "im {month} {year}",
        "vor ein paar Tagen", "letzten Sommer", "vor zwei Wochen", "im Jahr {year}", "Anfang des Jahres",
        "gestern Abend",
    ],
    "when_future": [
        "morgen", "nächste Woche", "am {day}", "dieses Wochenende", "im {month}", "in den nächsten Tagen",
        "später im Jahr", "am {day_num}. {month}", "nächsten Monat", "nach den Ferien",
    ],
    "when_habit": "jeden Morgen|sonntags|abends|unter der Woche|jeden {day}|{season}|einmal im Monat|"
                  "am Wochenende|fast jeden Tag|nach der Arbeit",
    # Coordinating conjunctions only: they keep the verb in second place.
    "conn": "aber|und|denn|doch",
    "s": [
        "{person} glaubt, dass das erst der Anfang ist.",
        "niemand weiß genau, was {when_future} passieren wird.",
        "das hat uns {person} {when_past} erzählt.",
        "{people} sind sich einig, dass sich die Lage seit {year} stark verändert hat.",
        "es ist nicht immer leicht zu erklären, aber die Zahlen sprechen für sich.",
        "{person} hat dazu einen kurzen Brief an die Lokalzeitung geschrieben.",
        "mehr als {pct} Prozent der Befragten waren mit dem Ergebnis zufrieden.",
        "wir kommen in einem späteren Artikel auf diese Frage zurück.",
        "{person} erinnert sich an eine Zeit, in der alles ganz anders war.",
        "die Geschichte begann {when_past} in einer kleinen Straße in {@city}.",
        "viele Leser haben uns danach gefragt, deshalb hier ein paar Antworten.",
        "{person} sagt gern, dass Geduld der Schlüssel zu allem ist.",
        "bei einer Tasse Kaffee hat {person} uns alles erklärt.",
        "die Frage ist einfach, aber die Antwort ist es nicht.",
        "die Menschen in {@city} werden sich noch lange an dieses Jahr erinnern.",
        "nach Meinung von {name} kommt das Beste erst noch.",
    ],
}

TOPICS = {
    "weather": {
        "title": [
            "Wettervorhersage für {@city}",
            "{cond} in {@city} erwartet", "warum der Winter in {@city} so besonders ist",
            "eine Woche Unwetter in {@city}", "wie man die Wolken liest",
        ],
        "cond": "starker Regen|leichter Nieselregen|strahlender Sonnenschein|dichter Nebel|stürmischer Wind|"
                "ein heftiges Gewitter|Schnee|Hagel|Glatteis|drückende Hitze|Frost|Dauerregen",
        "cond_acc": "starken Regen|leichten Nieselregen|strahlenden Sonnenschein|dichten Nebel|stürmischen Wind|"
                    "ein heftiges Gewitter|Schnee|Hagel|Glatteis|drückende Hitze|Frost|Dauerregen",
        "sky": "grau|bewölkt|blau|dunkel|klar|stürmisch|blass|wolkenverhangen",
        "direction": "Norden|Süden|Osten|Westen|Nordwesten|Südosten",
        "adj": "kalt|mild|warm|feucht|trocken|windig|nass|kurz|lang|hell|ruhig",
        "s": [
            "die Vorhersage für {day} kündigt {cond_acc} in {@city} an.",
            "{when_past} stieg die Temperatur in {@city} auf {temp} Grad.",
            "nach {n2_9} Tagen Regen wurde das Wetter endlich besser.",
            "{person} hat immer einen Regenschirm dabei, weil sich das Wetter in {@city} schnell ändert.",
            "ein starker Wind aus {direction} brachte {cond_acc} an die Küste.",
            "die Meteorologen erwarten {when_future} etwa {n10_99} Liter Regen pro Quadratmeter.",
            "der Himmel war {when_past} {sky}, und die Straßen waren nass und leer.",
            "wird es diesen Winter in {@city} schneien?",
            "{season} sind die Tage in {@city} {adj} und oft {adj}.",
            "{person} hat vor dem Verlassen des Hauses den Wetterbericht gelesen.",
            "dichter Nebel lag bis {clock} über dem Tal.",
            "laut dem Deutschen Wetterdienst war der {month} der nasseste Monat seit {year}.",
            "im Norden sind Gewitter wahrscheinlich, während es im Süden trocken und sonnig bleibt.",
            "der Wind war so stark, dass mehrere Bäume auf die Straße nach {city} fielen.",
            "die Landwirte machen sich Sorgen, denn es hat seit {n2_9} Wochen nicht geregnet.",
            "{when_habit} schaut {person} in die Wolken und versucht, das Wetter vorherzusagen.",
            "heute ist die Luft frisch, und für {day} ist {cond} angesagt.",
            "nach dem Unwetter erschien ein Regenbogen über dem Fluss.",
            "in der Nacht sinken die Temperaturen auf {temp} Grad.",
            "in den Bergen fiel der erste Schnee am {day_num}. {month}.",
            "die Wetterstation auf dem Dach misst alle zehn Minuten die Windgeschwindigkeit.",
        ],
    },
    "cooking": {
        "title": [
            "wie man {dish} zu Hause zubereitet", "ein einfaches Rezept für {@dish}", "{n2_9} Tipps für die Küche",
            "was man im Herbst kochen kann", "Kochen wie bei Oma",
        ],
        "dish": "eine Gemüsesuppe|einen Apfelkuchen|eine Tomatensoße|ein Brathähnchen|einen Zitronenkuchen|"
                "frische Nudeln|einen Fischeintopf|einen Kartoffelsalat|ein Pilzrisotto|Pfannkuchen|"
                "einen Zwiebelkuchen|einen Käsekuchen|eine Erbsensuppe|Apfelstrudel",
        "veg": "die Zwiebeln|die Karotten|die Kartoffeln|die Tomaten|die Pilze|die Äpfel|die Paprika|"
               "die Zucchini|die Lauchstangen|die Radieschen",
        "ingredient": "frische Tomaten|zwei Zwiebeln|etwas Butter|drei Eier|eine Knoblauchzehe|eine Tasse Mehl|"
                      "eine Prise Salz|einen Schuss Olivenöl|grüne Bohnen|braunen Zucker|warme Milch|"
                      "frische Kräuter|geriebenen Käse|einen Löffel Honig|Zitronensaft|schwarzen Pfeffer|"
                      "eine Handvoll Walnüsse",
        "fat": "etwas Butter|einen Schuss Olivenöl|einen Löffel Öl",
        "tool_in": "in einer großen Pfanne|in einem schweren Topf|"
                   "in einer Schüssel|in einem Bräter|in einer Backform",
        "side": "einem Stück Brot|einem grünen Salat|frischer Sahne|weißem Reis|Bratkartoffeln|einem Glas Apfelwein",
        "produce": "reife Erdbeeren|frischen Spargel|süße Kirschen|Kürbisse|Waldpilze|saftige Pfirsiche|"
                   "grüne Äpfel|junge Karotten|Pflaumen|frische Erbsen",
        "s": [
            "schneiden Sie zuerst {veg} in kleine Stücke.",
            "erhitzen Sie {fat} {tool_in} bei mittlerer Hitze.",
            "geben Sie {ingredient} dazu und rühren Sie {n2_9} Minuten lang vorsichtig um.",
            "backen Sie alles {n10_99} Minuten lang bei {oven} Grad.",
            "{person} sagt, das Geheimnis einer guten Küche sei die Geduld.",
            "servieren Sie das Gericht warm mit {side}.",
            "dieses Rezept dauert etwa {n10_99} Minuten und reicht für {n2_9} Personen.",
            "meine Großmutter machte jeden {day} {@dish}, und das ganze Haus duftete herrlich.",
            "wenn die Soße zu dick ist, geben Sie etwas Wasser dazu.",
            "{season} ist der Markt voller Farben und Düfte.",
            "man kann das Gericht {n2_9} Tage im Kühlschrank aufbewahren.",
            "essen Sie lieber {dish} oder {dish}?",
            "probieren Sie die Soße und würzen Sie bei Bedarf mit Salz und Pfeffer.",
            "ein scharfes Messer macht die Arbeit in der Küche viel leichter.",
            "der Teig muss vor dem Backen mindestens eine Stunde ruhen.",
            "{person} kaufte auf dem Markt {produce} für {price} Euro.",
            "lassen Sie den Kuchen abkühlen, bevor Sie ihn anschneiden.",
            "verrühren Sie {ingredient} und {ingredient} {tool_in}.",
            "mein erster Versuch war eine Katastrophe, aber ich habe viel gelernt.",
            "für Freunde zu kochen ist eine der einfachen Freuden des Lebens.",
            "waschen Sie {veg} gründlich und trocknen Sie sie mit einem sauberen Tuch ab.",
        ],
    },
    "travel": {
        "title": [
            "{n2_9} Tage in {@place}", "ein Wochenende in {@place}", "mit dem Zug durch {region}",
            "was man in {@place} sehen sollte", "unser Sommer in {region}",
        ],
        "region": "Schottland|Südspanien|Norwegen|Tirol|Südtirol|Andalusien|Kalabrien|Kroatien|Irland|Portugal",
        "transport": "mit dem Zug|mit dem Bus|mit dem Fahrrad|zu Fuß|mit der Fähre|mit dem Auto|mit dem Flugzeug",
        "sight": "den alten Dom|die Burg auf dem Hügel|den Hafen|den Marktplatz|den Botanischen Garten|"
                 "die Stadtmauer|das Nationalmuseum|die alte Brücke|die Markthalle|den Leuchtturm",
        "lodging": "ein kleines Hotel am Bahnhof|eine Pension am Meer|eine Jugendherberge|"
                   "eine Wohnung in der Altstadt|einen Campingplatz im Wald|einen Bauernhof außerhalb des Dorfes",
        "s": [
            "wir reisten {transport} von {city} nach {@place} und brauchten {n2_9} Stunden.",
            "die Reise nach {@place} dauerte wegen eines Streiks länger als geplant.",
            "{person} buchte {lodging} für {n2_9} Nächte.",
            "die Fahrkarte kostete {price} Euro, was für eine so lange Reise günstig ist.",
            "am ersten Tag besichtigten wir {sight} und {sight}.",
            "der Blick von oben lohnt den langen Aufstieg.",
            "wer nach {@place} fährt, sollte {sight} nicht verpassen.",
            "ist es besser, {transport} oder {transport} zu reisen?",
            "der Zug fuhr um {clock} ab und kam kurz vor Mitternacht an.",
            "wir wanderten {n10_99} Kilometer an der Küste entlang und sahen Delfine bei den Felsen.",
            "die Einheimischen waren freundlich und zeigten uns ein ruhiges Restaurant.",
            "unsere Reiseführerin sprach {n2_9} Sprachen und kannte jede Gasse der Altstadt.",
            "{season} ist {region} voller Besucher, deshalb sollte man früh buchen.",
            "{person} verlor am Flughafen einen Koffer, fand ihn aber zwei Tage später wieder.",
            "die beste Reisezeit für {region} ist der {month}.",
            "vergessen Sie nicht Ihren Pass, eine gute Karte und bequeme Schuhe.",
            "aus dem Zugfenster sahen wir Seen, Wälder und kleine Dörfer.",
            "für {lodging} zahlten wir {price} Euro pro Nacht.",
            "die Fähre zur Insel fährt zweimal am Tag.",
            "langsam zu reisen ist der beste Weg, ein Land zu verstehen.",
        ],
    },
    "science": {
        "title": [
            "neue Studie über {subject}", "was Forscher über {subject} herausgefunden haben",
            "eine Entdeckung in der {field}", "wie man {subject} erforscht", "die Zukunft der {field}",
        ],
        "field": "Astronomie|Biologie|Chemie|Physik|Geologie|Medizin|Klimaforschung|Informatik|Meeresbiologie|Genetik",
        "subject": "Schwarze Löcher|Honigbienen|Meeresströmungen|das menschliche Gehirn|Vulkane|Bakterien|"
                   "die Sonnenenergie|das Immunsystem|Kometen|Korallenriffe|Gletscher|den Schlaf|alte Wälder",
        "scientist": "ein Forschungsteam|die junge Physikerin|Professor {surname}|Doktor {surname}|"
                     "eine Gruppe von Studierenden|der Laborleiter",
        "instrument": "einem leistungsstarken Teleskop|einem neuen Mikroskop|einem kleinen Satelliten|"
                      "Computermodellen|Sensoren am Meeresboden|einem Teilchendetektor",
        "s": [
            "{scientist} veröffentlichte {year} eine neue Studie über {subject}.",
            "die Ergebnisse überraschten viele Fachleute.",
            "mit {instrument} untersuchte {scientist} {n100_999} Proben in {n2_9} Monaten.",
            "laut der Studie enthielten {pct} Prozent der Proben Spuren von Wasser.",
            "{scientist} erklärte, dass mehr Daten nötig sind, bevor man Schlüsse ziehen kann.",
            "das Experiment wurde {n2_9} Mal wiederholt, um die Ergebnisse zu überprüfen.",
            "Wissenschaftler erforschen {subject} seit mehr als {n10_99} Jahren.",
            "warum interessieren sich Forscher so sehr für {subject}?",
            "das neue Modell sagt voraus, dass sich der Effekt bis {future_year} verdoppeln wird.",
            "im Labor wird jede Messung sorgfältig notiert.",
            "ein kleiner Fehler in den Daten kann das ganze Ergebnis verändern.",
            "die {field} hat sich seit den ersten Computern stark verändert.",
            "das Team hofft, die Ergebnisse auf einer Konferenz in {place} vorzustellen.",
            "die Forschungsgelder stiegen im letzten Jahr um {pct} Prozent.",
            "die Theorie wurde {year} aufgestellt und erst viel später bestätigt.",
            "viele Fragen sind noch offen.",
            "die Proben werden bei minus {n10_99} Grad gelagert.",
            "mit {instrument} beobachtete das Team {subject} so genau wie nie zuvor.",
            "gute Wissenschaft braucht Neugier, sorgfältige Arbeit und ehrlichen Zweifel.",
            "der Artikel wurde vor der Veröffentlichung von {n2_9} unabhängigen Gutachtern geprüft.",
        ],
    },
    "sport": {
        "title": [
            "{team} gewinnt gegen {team}", "eine starke Saison für {team}", "ein großer Tag für den Sport",
            "Training für den Marathon", "warum ganz {@city} Sport liebt",
        ],
        "team": "Eintracht|Borussia|Fortuna|Union|Viktoria|Concordia|Alemannia|Rot-Weiß",
        "sport": "Fußball|Tennis|Radfahren|Schwimmen|Laufen|Basketball|Rudern|Volleyball|Handball|Skifahren",
        "s": [
            "{team} gewann das Spiel {score} nach einer schwierigen ersten Halbzeit.",
            "{person} trainiert {when_habit} und läuft etwa {n10_99} Kilometer pro Woche.",
            "das Stadion war mit über {n10_99} tausend Zuschauern ausverkauft.",
            "in der letzten Minute hielt der Torwart einen Elfmeter.",
            "der Trainer war mit der Abwehr nicht zufrieden.",
            "{sport} ist die beliebteste Sportart in {@city}.",
            "das Rennen beginnt um {clock} am Fluss.",
            "wer wird dieses Jahr die Meisterschaft gewinnen?",
            "nach einer Verletzung im {month} ist {person} endlich wieder auf dem Platz.",
            "die Mannschaft hat {n2_9} ihrer letzten zehn Spiele gewonnen.",
            "Karten für das Finale kosten {price} Euro.",
            "junge Spieler brauchen Zeit, Geduld und einen guten Trainer.",
            "die Radfahrer fuhren bei strömendem Regen den Berg hinauf.",
            "{person} lief den Marathon in {n2_9} Stunden und {minutes} Minuten.",
            "der Schiedsrichter unterbrach das Spiel wegen des Gewitters für zehn Minuten.",
            "jeden {day} treiben die Kinder im Park hinter der Schule Sport.",
            "{team} verlor zu Hause {score}, und die Fans gingen schweigend nach Hause.",
            "ein gutes Aufwärmen schützt die Muskeln vor Verletzungen.",
            "das neue Schwimmbad öffnet jeden Morgen um {clock}.",
            "{person} liebt {sport} seit der Kindheit.",
        ],
    },
    "city": {
        "title": [
            "Leben in {@city}", "ein neues Projekt für {@city}", "was sich in {@city} verändert",
            "{@city} bei Nacht", "ein Spaziergang durch die Altstadt",
        ],
        "building": "eine neue Bibliothek|eine Brücke|einen Park|eine Straßenbahnlinie|ein Schwimmbad|"
                    "eine Markthalle|einen Radweg|eine Schule|ein Kino|einen Konzertsaal",
        "district_in": "in der Altstadt|im Hafenviertel|in den nördlichen Vororten|in der Innenstadt|"
                       "im Universitätsviertel|im Osten der Stadt",
        "district_acc": "die Altstadt|das Hafenviertel|die nördlichen Vororte|die Innenstadt|"
                        "das Universitätsviertel|den Osten der Stadt",
        "district_dat": "der Altstadt|dem Hafenviertel|den nördlichen Vororten|der Innenstadt|"
                        "dem Universitätsviertel|dem Westen der Stadt",
        "s": [
            "der Stadtrat genehmigte {building} {district_in}.",
            "die Mieten in {@city} sind in {n2_9} Jahren um {pct} Prozent gestiegen.",
            "{person} wohnt im {ordinal} Stock eines alten Hauses in der Nähe des Bahnhofs.",
            "jeden Morgen fahren Tausende Menschen mit dem Bus zur Arbeit.",
            "der Verkehr {district_in} ist zwischen {clock} und {clock} schrecklich.",
            "letzten Monat hat an unserer Straßenecke eine kleine Bäckerei eröffnet.",
            "{people} wünschen sich mehr Bäume und weniger Autos {district_in}.",
            "die neue Straßenbahnlinie wird {district_acc} mit {district_dat} verbinden.",
            "nachts sind die Straßen von {@city} ruhig und still.",
            "das Museum ist an jedem ersten {day} im Monat kostenlos.",
            "{person} führt seit {n10_99} Jahren dasselbe Café {district_in}.",
            "wie kann eine große Stadt grün und lebenswert bleiben?",
            "die Sanierung des Gebäudes wird {n2_9} Millionen Euro kosten.",
            "am {day} füllt ein Wochenmarkt den Marktplatz mit Farben und Lärm.",
            "viele junge Familien ziehen in die Vororte.",
            "in der Prüfungszeit ist die Bibliothek bis {clock} geöffnet.",
            "{people} beschweren sich über den Baulärm {district_in}.",
            "ein neuer Park würde das Leben im ganzen Viertel verändern.",
            "in {@city} fahren fast alle mit dem Fahrrad zur Arbeit.",
            "die alte Fabrik am Hafen ist heute voller Künstler und kleiner Läden.",
        ],
    },
}

PASSKEY = {
    "intro": "Das Passwort lautet {passkey}. Merken Sie es sich.",
    "question": "Wie lautet das Passwort?",
    "answer": "Das Passwort lautet {passkey}.",
}

PII = [
    "für weitere Informationen schreiben Sie an {email}.",
    "Fragen können bis {day} an {email} geschickt werden.",
    "die alte Website lief auf einem Server mit der Adresse {ip}.",
    "Sie erreichen {name} direkt unter {email}.",
    "der Drucker im Büro hat die Adresse {private_ip}.",
    "laut den Technikern kam der Angriff von der Adresse {ip}.",
    "der Router zu Hause antwortet unter {private_ip}, aber die öffentliche Adresse war {ip}.",
]

BOILERPLATE = {
    "nav": [
        "Startseite | Nachrichten | Wetter | Sport | Kontakt",
        "Startseite | Über uns | Blog | Shop | Kontakt",
        "Zum Hauptinhalt springen",
        "Menü | Suche | Anmelden | Registrieren",
    ],
    "cookie": [
        "Diese Website verwendet Cookies, um Ihr Erlebnis zu verbessern. Cookies akzeptieren",
        "Mit der Nutzung dieser Seite stimmen Sie der Verwendung von Cookies zu.",
    ],
    "share": [
        "Teilen auf Facebook | Twitter | WhatsApp | E-Mail",
        "Abonnieren Sie unseren Newsletter",
        "Folgen Sie uns auf Instagram",
        "Weiterlesen",
    ],
    "footer": [
        "© {year} {site}. Alle Rechte vorbehalten.",
        "Datenschutz | Impressum | Cookie-Einstellungen",
        "Copyright {year} {site} - Alle Rechte vorbehalten",
    ],
}

SPAM = {
    "phrases": [
        "billige Uhren online kaufen", "bester Preis garantiert", "jetzt hier klicken", "heute kostenloser Versand",
        "nur für kurze Zeit", "jetzt bestellen und sparen", "billige Flüge billige Hotels",
        "gewinnen Sie ein Handy", "Geld verdienen von zu Hause", "schnell abnehmen",
    ],
    "keywords": "billig|Angebote|beste|gratis|Rabatt|Sale|online|Angebot|kaufen|jetzt",
}

SITES = [
    "www.wetter-hamburg.de", "nachrichten.stadtleben.de", "www.kochen-zuhause.de", "blog.langsam-reisen.de",
    "www.wissenschaft-aktuell.de", "www.sport-regional.de", "www.lokalzeitung.de",
]
