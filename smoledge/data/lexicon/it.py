"""Italian grammar of the sample corpus (format: smoledge.data.lexicon).

Italian fuses prepositions with articles (di + il = del), so noun phrases
that carry an article are only placed after verbs or after prepositions
that do not fuse (con, per, tra); place phrases come ready-made ("al porto").
"""

COMMON = {
    "name": "Giulia|Marco|Chiara|Luca|Francesca|Matteo|Sara|Alessandro|"
            "Elena|Davide|Martina|Niccolò|Silvia|Andrea|Federica|Paolo",
    "surname": "Rossi|Russo|Ferrari|Esposito|Bianchi|Romano|Colombo|Ricci|Marino|Greco|Bruno|Gallo",
    "person": [
        "{name}", "{name} {surname}", "il mio vicino", "la nostra insegnante", "il vecchio fornaio", "mia sorella",
        "una giovane giornalista", "il sindaco", "mio nonno", "un amico d'infanzia", "la nuova dottoressa",
        "la mia collega", "il negoziante sotto casa", "un contadino della zona", "mia zia", "la preside della scuola",
    ],
    "people": "molte famiglie|gli abitanti|i turisti|la maggior parte dei visitatori|i giovani|i bambini|"
              "i nostri vicini|gli studenti|le persone anziane|i commercianti|molti lettori",
    "city": "Milano|Torino|Bologna|Firenze|Napoli|Genova|Verona|Palermo|Bari|Padova|Trieste|Perugia",
    "place": "Lisbona|Roma|Vienna|Praga|Barcellona|Amsterdam|Copenaghen|Dublino|Atene|Cracovia|Siviglia|"
             "Porto|Berlino|Parigi|Edimburgo",
    "day": "lunedì|martedì|mercoledì|giovedì|venerdì|sabato|domenica",
    "month": "gennaio|febbraio|marzo|aprile|maggio|giugno|luglio|agosto|settembre|ottobre|novembre|dicembre",
    "season": "in primavera|in estate|in autunno|in inverno",
    "ordinal": "primo|secondo|terzo|quarto|quinto|sesto|settimo|ottavo",
    "when_past": [
        "ieri", "la settimana scorsa", "{day} scorso", "il {day_num} {month}", "a {month} del {year}",
        "qualche giorno fa", "l'estate scorsa", "due settimane fa", "nel {year}", "all'inizio dell'anno",
        "ieri sera",
    ],
    "when_future": [
        "domani", "la settimana prossima", "{day} prossimo", "questo fine settimana", "a {month}",
        "nei prossimi giorni", "entro la fine dell'anno", "il {day_num} {month}", "il mese prossimo",
        "dopo le vacanze",
    ],
    "when_habit": "ogni mattina|la domenica|la sera|durante la settimana|ogni {day}|{season}|una volta al mese|"
                  "nel fine settimana|quasi tutti i giorni|dopo il lavoro",
    "conn": "tuttavia,|naturalmente,|in realtà,|nel frattempo,|per questo motivo,|alla fine,|allo stesso tempo,|"
            "eppure,|d'altra parte,|di conseguenza,|per fortuna,|all'inizio,",
    "s": [
        "{person} pensa che questo sia solo l'inizio.",
        "nessuno sa esattamente cosa succederà {when_future}.",
        "è quello che ci ha raccontato {person} {when_past}.",
        "{people} sono d'accordo sul fatto che la situazione è molto cambiata dal {year}.",
        "non è sempre facile da spiegare, ma i numeri parlano da soli.",
        "{person} ha scritto una breve lettera al giornale locale su questo argomento.",
        "più del {pct} per cento degli intervistati si è detto soddisfatto del risultato.",
        "torneremo su questa domanda in un prossimo articolo.",
        "{person} ricorda un'epoca in cui tutto era molto diverso.",
        "la storia è cominciata {when_past}, in una piccola strada di {@city}.",
        "molti lettori ci hanno fatto questa domanda, ecco quindi alcune risposte.",
        "secondo {person}, il meglio deve ancora venire.",
        "come dice spesso {person}, la pazienza è la chiave di tutto.",
        "ne abbiamo parlato con {person} davanti a un caffè.",
        "la domanda è semplice, ma la risposta non lo è.",
        "gli abitanti di {@city} si ricorderanno a lungo di quest'anno.",
    ],
}

TOPICS = {
    "weather": {
        "title": [
            "previsioni del tempo per {@city}",
            "{cond} in arrivo su {@city}", "perché l'inverno a {@city} è così speciale",
            "una settimana di maltempo a {@city}", "come leggere le nuvole",
        ],
        "cond": "pioggia intensa|piogge leggere|un sole splendente|nebbia fitta|vento forte|un temporale violento|"
                "neve|grandine|cielo sereno|nuvole sparse|un caldo afoso|pioggerella",
        "sky": "grigio|nuvoloso|azzurro|scuro|limpido|tempestoso|pallido|coperto di nuvole",
        "direction": "nord|sud|est|ovest|nord-ovest|sud-est",
        "adj": "freddi|miti|caldi|umidi|secchi|ventosi|piovosi|corti|lunghi|luminosi|tranquilli",
        "s": [
            "le previsioni per {day} annunciano {cond} a {@city}.",
            "{when_past}, la temperatura a {@city} ha raggiunto {temp} gradi.",
            "dopo {n2_9} giorni di brutto tempo, finalmente è tornato il sole.",
            "{person} porta sempre un ombrello, perché il tempo a {@city} cambia in fretta.",
            "un forte vento da {direction} ha portato {cond} sulla costa.",
            "i meteorologi prevedono circa {n10_99} millimetri di pioggia {when_future}.",
            "il cielo era {sky} {when_past}, e le strade erano bagnate e vuote.",
            "nevicherà a {@city} quest'inverno?",
            "{season}, le giornate a {@city} sono {adj} e spesso {adj}.",
            "{person} ha controllato le previsioni prima di uscire di casa.",
            "una nebbia fitta ha coperto la valle fino alle {clock}.",
            "secondo il servizio meteorologico, {month} è stato il mese più piovoso dal {year}.",
            "al nord sono probabili temporali, mentre al sud il tempo resterà asciutto e soleggiato.",
            "il vento era così forte che diversi alberi sono caduti sulla strada per {city}.",
            "gli agricoltori sono preoccupati, perché non piove da {n2_9} settimane.",
            "{when_habit}, {person} guarda le nuvole e prova a indovinare il tempo.",
            "oggi l'aria è fresca, e le previsioni parlano di {cond} per {day}.",
            "dopo il temporale, un arcobaleno è apparso sopra il fiume.",
            "di notte le temperature scenderanno fino a {temp} gradi.",
            "in montagna la prima neve è caduta il {day_num} {month}.",
            "la stazione meteo sul tetto misura la velocità del vento ogni dieci minuti.",
        ],
    },
    "cooking": {
        "title": [
            "come preparare {dish} a casa", "una ricetta semplice: {@dish}", "{@dish} come la faceva la nonna",
            "{n2_9} consigli per cucinare meglio", "cosa cucinare in autunno",
        ],
        "dish": "una zuppa di verdure|una torta di mele|un sugo di pomodoro|un pollo arrosto|una torta al limone|"
                "la pasta fresca|una zuppa di pesce|un'insalata di patate|un risotto ai funghi|una frittata|"
                "le lasagne|una crostata|un minestrone|il tiramisù",
        "veg": "le cipolle|le carote|le patate|i pomodori|i funghi|le mele|i peperoni|le zucchine|i porri|il cavolo",
        "ingredient": "pomodori freschi|due cipolle|un po' di burro|tre uova|uno spicchio d'aglio|"
                      "una tazza di farina|un pizzico di sale|un filo d'olio d'oliva|fagiolini|zucchero di canna|"
                      "latte tiepido|erbe fresche|formaggio grattugiato|un cucchiaio di miele|succo di limone|"
                      "pepe nero|una manciata di noci",
        "fat": "un po' di burro|un filo d'olio d'oliva|un cucchiaio d'olio",
        "tool": "una padella grande|una pentola pesante|una ciotola|una casseruola|una teglia",
        "side": "un pezzo di pane|un'insalata verde|panna fresca|riso bianco|patate arrosto|un bicchiere di vino",
        "produce": "fragole mature|asparagi freschi|ciliegie|zucche|funghi di bosco|pesche succose|mele verdi|"
                   "carote novelle|prugne|piselli freschi",
        "s": [
            "per prima cosa, tagliate {veg} a pezzetti.",
            "scaldate {fat} in {tool} a fuoco medio.",
            "aggiungete {ingredient} e mescolate piano per {n2_9} minuti.",
            "infornate per {minutes} minuti a {oven} gradi.",
            "{person} dice che il segreto di una buona cucina è la pazienza.",
            "servite ben caldo con {side}.",
            "questa ricetta richiede circa {n10_99} minuti ed è per {n2_9} persone.",
            "mia nonna preparava {@dish} ogni {day}, e tutta la casa profumava.",
            "se il sugo è troppo denso, aggiungete un po' d'acqua.",
            "{season}, il mercato è pieno di colori e profumi.",
            "potete conservare il piatto in frigorifero per {n2_9} giorni.",
            "preferite {dish} o {dish}?",
            "assaggiate il sugo e aggiustate di sale e pepe se serve.",
            "un buon coltello rende il lavoro in cucina molto più facile.",
            "l'impasto deve riposare almeno un'ora prima della cottura.",
            "{person} ha comprato {produce} al mercato per {price} euro.",
            "lasciate raffreddare la torta prima di tagliarla.",
            "mescolate {ingredient} e {ingredient} in {tool}.",
            "il mio primo tentativo è stato un disastro, ma ho imparato molto.",
            "cucinare per gli amici è uno dei piaceri semplici della vita.",
            "lavate bene {veg} e asciugateli con un canovaccio pulito.",
        ],
    },
    "travel": {
        "title": [
            "{n2_9} giorni a {@place}", "un fine settimana a {@place}", "in treno attraverso la {region}",
            "cosa vedere a {@place}", "la nostra estate in {region}",
        ],
        "region": "Toscana|Sicilia|Sardegna|Puglia|Norvegia|Scozia|Provenza|Calabria|Liguria|Umbria",
        "transport": "in treno|in autobus|in bicicletta|a piedi|in traghetto|in macchina|in aereo",
        "sight": "la vecchia cattedrale|il castello sulla collina|il porto|la piazza principale|l'orto botanico|"
                 "le mura della città|il museo nazionale|il ponte vecchio|il mercato coperto|il faro",
        "lodging": "un piccolo albergo vicino alla stazione|una pensione sul mare|un ostello della gioventù|"
                   "un appartamento nel centro storico|un campeggio nel bosco|un agriturismo fuori dal paese",
        "s": [
            "abbiamo viaggiato {transport} da {city} a {@place} in {n2_9} ore.",
            "il viaggio per {@place} è durato più del previsto a causa di uno sciopero.",
            "{person} ha prenotato {lodging} per {n2_9} notti.",
            "il biglietto costava {price} euro, che è poco per un viaggio così lungo.",
            "il primo giorno abbiamo visitato {sight} e {sight}.",
            "la vista da lassù vale la lunga salita.",
            "se andate a {@place}, non perdete {sight}.",
            "è meglio viaggiare {transport} o {transport}?",
            "il treno è partito alle {clock} ed è arrivato poco prima di mezzanotte.",
            "abbiamo camminato per {n10_99} chilometri lungo la costa e abbiamo visto dei delfini.",
            "la gente del posto è stata gentile e ci ha consigliato una trattoria tranquilla.",
            "la nostra guida parlava {n2_9} lingue e conosceva ogni vicolo del centro storico.",
            "{season}, la {region} è piena di visitatori, quindi conviene prenotare presto.",
            "{person} ha perso una valigia all'aeroporto, ma l'ha ritrovata due giorni dopo.",
            "il periodo migliore per visitare la {region} è {month}.",
            "non dimenticate il passaporto, una buona cartina e scarpe comode.",
            "dal finestrino del treno abbiamo visto laghi, boschi e piccoli paesi.",
            "per {lodging} abbiamo pagato {price} euro a notte.",
            "il traghetto per l'isola parte due volte al giorno.",
            "viaggiare lentamente è il modo migliore per capire un paese.",
        ],
    },
    "science": {
        "title": [
            "un nuovo studio su {subject}", "cosa hanno scoperto i ricercatori", "una scoperta in {field}",
            "come si studia la natura", "il futuro della ricerca",
        ],
        "field": "astronomia|biologia|chimica|fisica|geologia|"
                 "medicina|climatologia|informatica|biologia marina|genetica",
        "subject": "buchi neri|api|correnti oceaniche|cervello umano|vulcani|batteri|energia solare|"
                   "sistema immunitario|comete|barriere coralline|ghiacciai|sonno|foreste antiche",
        "subject_obj": "i buchi neri|le api|le correnti oceaniche|il cervello umano|i vulcani|i batteri|"
                       "l'energia solare|il sistema immunitario|le comete|le barriere coralline|i ghiacciai|"
                       "il sonno|le foreste antiche",
        "scientist": "un gruppo di ricercatori|la giovane fisica|il professor {surname}|la dottoressa {surname}|"
                     "un gruppo di studenti|il direttore del laboratorio",
        "instrument": "un potente telescopio|un nuovo microscopio|un piccolo satellite|modelli al computer|"
                      "sensori sul fondo del mare|un rivelatore di particelle",
        "s": [
            "{scientist} ha pubblicato un nuovo studio su {subject} nel {year}.",
            "i risultati hanno sorpreso molti esperti.",
            "con {instrument}, {scientist} ha misurato {n100_999} campioni in {n2_9} mesi.",
            "secondo lo studio, il {pct} per cento dei campioni conteneva tracce d'acqua.",
            "{scientist} ha spiegato che servono più dati prima di trarre conclusioni.",
            "l'esperimento è stato ripetuto {n2_9} volte per verificare i risultati.",
            "gli scienziati studiano {subject_obj} da più di {n10_99} anni.",
            "perché i ricercatori dedicano tanto tempo a studiare {subject_obj}?",
            "il nuovo modello prevede che l'effetto raddoppierà entro il {future_year}.",
            "in laboratorio ogni misura viene annotata con cura.",
            "un piccolo errore nei dati può cambiare tutta la conclusione.",
            "la {field} è cambiata molto dall'arrivo dei primi computer.",
            "il gruppo spera di presentare i risultati a un congresso a {place}.",
            "i fondi per la ricerca sono aumentati del {pct} per cento l'anno scorso.",
            "la teoria è stata proposta nel {year} e confermata molto più tardi.",
            "molte domande restano aperte.",
            "i campioni sono conservati a meno {n10_99} gradi.",
            "con {instrument}, il gruppo ha osservato {subject_obj} con un dettaglio mai visto.",
            "la buona scienza ha bisogno di curiosità, lavoro accurato e dubbio onesto.",
            "l'articolo è stato valutato da {n2_9} esperti indipendenti prima della pubblicazione.",
        ],
    },
    "sport": {
        "title": [
            "vittoria per {team}", "una grande stagione per {team}", "una grande giornata di sport",
            "allenarsi per la maratona", "perché tutta {@city} ama lo sport",
        ],
        "team": "la squadra locale|la Virtus|la nazionale|la Juventina|la squadra universitaria|la Pro Patria|"
                "la squadra femminile|la squadra giovanile",
        "sport": "il calcio|il tennis|il ciclismo|il nuoto|la corsa|la pallacanestro|il canottaggio|"
                 "la pallavolo|il rugby|lo sci",
        "s": [
            "{team} ha vinto la partita {score} dopo un primo tempo difficile.",
            "{person} si allena {when_habit} e corre circa {n10_99} chilometri alla settimana.",
            "lo stadio era pieno, con più di {n10_99} mila tifosi.",
            "all'ultimo minuto, il portiere ha parato un rigore.",
            "l'allenatore non era contento della difesa.",
            "{sport} è lo sport più popolare a {@city}.",
            "la gara parte alle {clock} vicino al fiume.",
            "chi vincerà il campionato quest'anno?",
            "dopo un infortunio a {month}, {person} è finalmente tornato in campo.",
            "la squadra ha vinto {n2_9} delle ultime dieci partite.",
            "i biglietti per la finale costano {price} euro.",
            "i giovani giocatori hanno bisogno di tempo, pazienza e un buon allenatore.",
            "i ciclisti hanno scalato la montagna sotto una pioggia battente.",
            "{person} ha finito la maratona in {n2_9} ore e {minutes} minuti.",
            "l'arbitro ha fermato la partita per dieci minuti a causa del temporale.",
            "ogni {day}, i bambini fanno sport nel parco dietro la scuola.",
            "{team} ha perso {score} in casa, e i tifosi sono tornati a casa in silenzio.",
            "un buon riscaldamento protegge i muscoli dagli infortuni.",
            "la nuova piscina apre alle {clock} tutte le mattine.",
            "{person} pratica {sport} fin da bambino.",
        ],
    },
    "city": {
        "title": [
            "la vita a {@city}", "un nuovo progetto per {@city}", "cosa sta cambiando a {@city}",
            "{@city} di notte", "una passeggiata {district}",
        ],
        "building": "una biblioteca|un ponte|un parco|una linea del tram|una piscina|un mercato coperto|"
                    "una pista ciclabile|una scuola|un cinema|una sala da concerto",
        "district": "nel centro storico|nel quartiere del porto|nella periferia nord|in centro|"
                    "nel quartiere universitario|nella zona est",
        "s": [
            "il consiglio comunale ha approvato {building} {district}.",
            "gli affitti a {@city} sono aumentati del {pct} per cento in {n2_9} anni.",
            "{person} abita al {ordinal} piano di un vecchio palazzo vicino alla stazione.",
            "ogni mattina, migliaia di persone prendono l'autobus per andare al lavoro.",
            "il traffico {district} è terribile tra le {clock} e le {clock}.",
            "il mese scorso ha aperto un piccolo forno all'angolo della nostra via.",
            "{people} vogliono più alberi e meno macchine {district}.",
            "la nuova linea del tram collegherà il centro con la periferia.",
            "di notte le strade di {@city} sono calme e silenziose.",
            "il museo è gratuito la prima domenica di ogni mese.",
            "{person} gestisce lo stesso bar {district} da {n10_99} anni.",
            "come può una grande città restare verde e piacevole?",
            "la ristrutturazione del palazzo costerà {n2_9} milioni di euro.",
            "ogni {day}, un mercato riempie la piazza di colori e di rumore.",
            "molte giovani famiglie si trasferiscono in periferia.",
            "la biblioteca resta aperta fino alle {clock} durante gli esami.",
            "{people} si lamentano del rumore del cantiere {district}.",
            "{building} cambierebbe la vita di tutto il quartiere.",
            "a {@city} quasi tutti vanno al lavoro in bicicletta.",
            "la vecchia fabbrica vicino al porto oggi ospita artisti e piccoli negozi.",
        ],
    },
}

PASSKEY = {
    "intro": "La chiave segreta è {passkey}. Ricordala.",
    "question": "Qual è la chiave segreta?",
    "answer": "La chiave segreta è {passkey}.",
}

PII = [
    "per maggiori informazioni, scrivete a {email}.",
    "le domande si possono inviare a {email} entro {day}.",
    "il vecchio sito era ospitato su un server con l'indirizzo {ip}.",
    "potete contattare {name} direttamente all'indirizzo {email}.",
    "la stampante dell'ufficio ha l'indirizzo {private_ip}.",
    "secondo i tecnici, l'attacco è arrivato dall'indirizzo {ip}.",
    "il router di casa risponde a {private_ip}, ma l'indirizzo pubblico era {ip}.",
]

BOILERPLATE = {
    "nav": [
        "Home | Notizie | Meteo | Sport | Contatti",
        "Home | Chi siamo | Blog | Negozio | Contatti",
        "Vai al contenuto principale",
        "Menu | Cerca | Accedi | Registrati",
    ],
    "cookie": [
        "Questo sito utilizza i cookie per migliorare la tua esperienza. Accetta i cookie",
        "Continuando la navigazione accetti la nostra cookie policy.",
    ],
    "share": [
        "Condividi su Facebook | Twitter | WhatsApp | Email",
        "Iscriviti alla nostra newsletter",
        "Seguici su Instagram",
        "Leggi di più",
    ],
    "footer": [
        "© {year} {site}. Tutti i diritti riservati.",
        "Privacy | Note legali | Impostazioni cookie",
        "Copyright {year} {site} - Tutti i diritti riservati",
    ],
}

SPAM = {
    "phrases": [
        "compra orologi economici", "miglior prezzo garantito", "clicca qui adesso", "spedizione gratuita oggi",
        "offerta limitata", "ordina ora e risparmia", "voli economici hotel economici", "vinci un telefono gratis",
        "guadagna soldi da casa", "dimagrisci in fretta",
    ],
    "keywords": "economico|offerte|migliore|gratis|sconto|saldi|online|offerta|compra|adesso",
}

SITES = [
    "www.meteo-bologna.it", "notizie.vivereincitta.it", "www.ricettedicasa.it", "blog.viaggiarelento.it",
    "www.scienzaoggi.it", "www.sportlocale.it", "www.giornalelocale.it",
]
