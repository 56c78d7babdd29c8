"""French grammar of the sample corpus (format: smoledge.data.lexicon)."""

COMMON = {
    "name": "Camille|Julien|Chloé|Antoine|Léa|Mathieu|Manon|Hugo|"
            "Élodie|Nicolas|Inès|Théo|Margaux|Lucas|Zoé|Benoît",
    "surname": "Martin|Bernard|Dubois|Moreau|Laurent|Lefèvre|Roux|Fournier|Girard|Mercier|Blanc|Garnier",
    "person": [
        "{name}", "{name} {surname}", "mon voisin", "notre professeure", "le vieux boulanger", "ma sœur",
        "une jeune journaliste", "le maire", "mon grand-père", "un ami d'enfance", "la nouvelle médecin",
        "ma collègue", "le commerçant du quartier",
        "un agriculteur de la région", "ma tante", "la directrice de l'école",
    ],
    "people": "beaucoup de familles|les habitants|les touristes|la plupart des visiteurs|les jeunes|les enfants|"
              "nos voisins|les étudiants|les personnes âgées|les commerçants|la plupart des lecteurs",
    "city": "Lyon|Marseille|Toulouse|Bordeaux|Nantes|Lille|Strasbourg|Rennes|Montpellier|Grenoble|Dijon|Nice",
    "place": "Lisbonne|Rome|Vienne|Prague|Barcelone|Amsterdam|Copenhague|Dublin|Athènes|Cracovie|Séville|"
             "Florence|Porto|Berlin|Genève",
    "day": "lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche",
    "month": "janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre",
    "season": "au printemps|en été|en automne|en hiver",
    "ordinal": "premier|deuxième|troisième|quatrième|cinquième|sixième|septième|huitième",
    "when_past": [
        "hier", "la semaine dernière", "lundi dernier", "{day} dernier", "le {day_num} {month}",
        "en {month} {year}", "il y a quelques jours", "l'été dernier", "il y a deux semaines", "en {year}",
        "au début de l'année", "hier soir",
    ],
    "when_future": [
        "demain", "la semaine prochaine", "{day} prochain", "ce week-end", "en {month} prochain",
        "dans les prochains jours", "plus tard dans l'année", "le {day_num} {month}", "le mois prochain",
        "après les vacances",
    ],
    "when_habit": "chaque matin|le dimanche|le soir|pendant la semaine|tous les {day}s|{season}|"
                  "une fois par mois|le week-end|presque tous les jours|après le travail",
    "conn": "cependant,|bien sûr,|en fait,|pendant ce temps,|pour cette raison,|finalement,|en même temps,|"
            "pourtant,|d'un autre côté,|par conséquent,|heureusement,|au début,",
    "s": [
        "{person} pense que ce n'est que le début.",
        "personne ne sait exactement ce qui va se passer {when_future}.",
        "c'est ce que {person} nous a raconté {when_past}.",
        "{people} sont d'accord pour dire que la situation a beaucoup changé depuis {year}.",
        "ce n'est pas toujours facile à expliquer, mais les chiffres parlent d'eux-mêmes.",
        "{person} a écrit une courte lettre au journal local à ce sujet.",
        "plus de {pct} pour cent des personnes interrogées se disent satisfaites du résultat.",
        "nous reviendrons sur cette question dans un prochain article.",
        "{person} se souvient d'une époque où tout était très différent.",
        "l'histoire a commencé {when_past}, dans une petite rue de {@city}.",
        "beaucoup de lecteurs nous ont posé la question, alors voici quelques réponses.",
        "selon {person}, le meilleur reste à venir.",
        "comme le dit souvent {person}, la patience est la clé de tout.",
        "nous en avons parlé avec {person} autour d'un café.",
        "la question est simple, mais la réponse ne l'est pas.",
        "les habitants de {@city} se souviendront longtemps de cette année.",
    ],
}

TOPICS = {
    "weather": {
        "title": [
            "prévisions météo pour {@city}", "{cond} attendue à {@city} {when_future}",
            "pourquoi l'hiver à {@city} est si particulier", "une semaine de temps agité à {@city}",
            "comment lire les nuages",
        ],
        "cond": "une pluie forte|de la pluie fine|un grand soleil|un brouillard épais|un vent violent|"
                "un orage|de la neige|de la grêle|un ciel dégagé|des nuages épars|une chaleur étouffante|"
                "de la bruine",
        "sky": "gris|nuageux|bleu|sombre|clair|orageux|pâle|chargé de nuages",
        "direction": "nord|sud|est|ouest|nord-ouest|sud-est",
        "adj": "froids|doux|chauds|humides|secs|venteux|pluvieux|courts|longs|lumineux|calmes",
        "s": [
            "la météo annonce {cond} à {@city} pour {day}.",
            "{when_past}, la température à {@city} a atteint {temp} degrés.",
            "après {n2_9} jours de mauvais temps, le ciel s'est enfin dégagé.",
            "{person} emporte toujours un parapluie, car le temps change vite à {@city}.",
            "un vent fort venu du {direction} a apporté {cond} sur la côte.",
            "les prévisionnistes attendent environ {n10_99} millimètres de pluie {when_future}.",
            "le ciel était {sky} {when_past}, et les rues étaient mouillées et vides.",
            "va-t-il neiger à {@city} cet hiver ?",
            "{season}, les jours à {@city} sont {adj} et souvent {adj}.",
            "{person} a regardé le bulletin météo avant de sortir de la maison.",
            "un brouillard épais a couvert la vallée jusqu'à {clock}.",
            "selon Météo-France, {month} a été le mois le plus pluvieux depuis {year}.",
            "des orages sont probables dans le nord, tandis que le sud restera sec et ensoleillé.",
            "le vent était si fort que plusieurs arbres sont tombés sur la route de {city}.",
            "les agriculteurs s'inquiètent, car il n'a pas plu depuis {n2_9} semaines.",
            "{when_habit}, {person} observe les nuages et essaie de deviner le temps.",
            "l'air est frais aujourd'hui, et la météo prévoit {cond} pour {day}.",
            "après l'orage, un bel arc-en-ciel est apparu au-dessus de la rivière.",
            "la température descendra à {temp} degrés pendant la nuit.",
            "en montagne, la première neige est tombée le {day_num} {month}.",
            "la station météo sur le toit mesure la vitesse du vent toutes les dix minutes.",
        ],
    },
    "cooking": {
        "title": [
            "comment préparer {dish} à la maison", "une recette simple : {@dish}",
            "{@dish} comme chez ma grand-mère", "{n2_9} conseils pour réussir {dish}", "que cuisiner en automne",
        ],
        "dish": "une soupe de légumes|une tarte aux pommes|une sauce tomate|un poulet rôti|un gâteau au citron|"
                "des pâtes fraîches|une bouillabaisse|une salade de pommes de terre|un risotto aux champignons|"
                "des crêpes|une tarte à l'oignon|un gratin dauphinois|une quiche lorraine|un clafoutis aux cerises",
        "veg": "les oignons|les carottes|les pommes de terre|les tomates|les champignons|les pommes|"
               "les poivrons|les courgettes|les poireaux|le chou",
        "ingredient": "des tomates fraîches|deux oignons|un peu de beurre|trois œufs|une gousse d'ail|"
                      "une tasse de farine|une pincée de sel|un filet d'huile d'olive|des haricots verts|"
                      "du sucre roux|du lait tiède|des herbes fraîches|du fromage râpé|une cuillère de miel|"
                      "du jus de citron|du poivre noir|une poignée de noix",
        "fat": "un peu de beurre|un filet d'huile d'olive|une cuillère d'huile",
        "tool": "une grande poêle|une cocotte en fonte|un saladier|une casserole|un moule à gâteau",
        "side": "un morceau de pain|une salade verte|de la crème fraîche|du riz blanc|des pommes de terre rôties|"
                "un verre de cidre",
        "produce": "des fraises bien mûres|des asperges fraîches|des cerises|des potirons|des champignons sauvages|"
                   "des pêches juteuses|des pommes vertes|des carottes nouvelles|des prunes|des petits pois",
        "s": [
            "d'abord, coupez {veg} en petits morceaux.",
            "faites chauffer {fat} dans {tool} à feu moyen.",
            "ajoutez {ingredient} et remuez doucement pendant {n2_9} minutes.",
            "enfournez pendant {minutes} minutes à {oven} degrés.",
            "{person} dit que le secret d'une bonne cuisine, c'est la patience.",
            "servez bien chaud avec {side}.",
            "cette recette demande environ {n10_99} minutes et convient pour {n2_9} personnes.",
            "ma grand-mère préparait {@dish} tous les {day}s, et toute la maison sentait bon.",
            "si la sauce est trop épaisse, ajoutez un peu d'eau.",
            "{season}, le marché est plein de couleurs et de parfums.",
            "on peut garder ce plat au réfrigérateur pendant {n2_9} jours.",
            "préférez-vous {dish} ou {dish} ?",
            "goûtez la sauce et rectifiez l'assaisonnement avec du sel et du poivre.",
            "un bon couteau rend le travail en cuisine beaucoup plus facile.",
            "la pâte doit reposer au moins une heure avant la cuisson.",
            "{person} a acheté {produce} au marché pour {price} euros.",
            "laissez refroidir le gâteau avant de le couper.",
            "mélangez {ingredient} et {ingredient} dans {tool}.",
            "mon premier essai était une catastrophe, mais j'ai beaucoup appris.",
            "cuisiner pour ses amis est l'un des plaisirs simples de la vie.",
            "lavez {veg} soigneusement et séchez-les avec un torchon propre.",
        ],
    },
    "travel": {
        "title": [
            "{n2_9} jours à {@place}", "un week-end à {@place}", "voyage en train à travers {region}",
            "que voir à {@place}", "souvenirs de voyage : {region}",
        ],
        "region": "les Alpes|la Bretagne|le sud de l'Espagne|la Toscane|la Norvège|la côte atlantique|"
                  "le Jura|la Provence|les Pyrénées|les îles grecques",
        "transport": "en train|en bus|à vélo|à pied|en ferry|en voiture|en avion",
        "sight": "la vieille cathédrale|le château sur la colline|le port|la place principale|le jardin botanique|"
                 "les remparts|le musée national|le vieux pont|les halles|le phare",
        "lodging": "un petit hôtel près de la gare|une maison d'hôtes au bord de la mer|une auberge de jeunesse|"
                   "un appartement dans la vieille ville|un camping dans la forêt|une ferme à la campagne",
        "s": [
            "nous avons voyagé {transport} de {city} à {@place} en {n2_9} heures.",
            "le trajet jusqu'à {@place} a été plus long que prévu à cause d'une grève.",
            "{person} a réservé {lodging} pour {n2_9} nuits.",
            "le billet coûtait {price} euros, ce qui est bon marché pour un si long voyage.",
            "le premier jour, nous avons visité {sight} et {sight}.",
            "la vue depuis {sight} vaut bien la longue montée.",
            "si vous allez à {@place}, ne manquez pas {sight}.",
            "vaut-il mieux voyager {transport} ou {transport} ?",
            "le train est parti à {clock} et il est arrivé juste avant minuit.",
            "nous avons marché {n10_99} kilomètres le long de la côte et nous avons vu des dauphins.",
            "les habitants étaient accueillants et nous ont conseillé un petit restaurant tranquille.",
            "notre guide parlait {n2_9} langues et connaissait chaque rue de la vieille ville.",
            "{season}, il y a beaucoup de visiteurs, alors réservez tôt.",
            "{person} a perdu une valise à l'aéroport, mais l'a retrouvée deux jours plus tard.",
            "le meilleur moment pour visiter {region}, c'est en {month}.",
            "n'oubliez pas votre passeport, une bonne carte et des chaussures confortables.",
            "par la fenêtre du train, nous avons vu des lacs, des forêts et des petits villages.",
            "nous avons logé dans {lodging} pour {price} euros la nuit.",
            "le bateau pour l'île part deux fois par jour.",
            "voyager lentement est la meilleure façon de comprendre un pays.",
        ],
    },
    "science": {
        "title": [
            "une nouvelle étude sur {subject}", "ce que les chercheurs ont appris sur {subject}",
            "une découverte en {field}", "comment on étudie {subject}", "l'avenir de la recherche",
        ],
        "field": "astronomie|biologie|chimie|physique|géologie|médecine|climatologie|informatique|"
                 "biologie marine|génétique",
        "subject": "les trous noirs|les abeilles|les courants océaniques|le cerveau humain|les volcans|"
                   "les bactéries|l'énergie solaire|le système immunitaire|les comètes|les récifs coralliens|"
                   "les glaciers|le sommeil|les forêts anciennes",
        "scientist": "une équipe de chercheurs|la jeune physicienne|le professeur {surname}|la docteure {surname}|"
                     "un groupe d'étudiants|le directeur du laboratoire",
        "instrument": "un télescope puissant|un nouveau microscope|un petit satellite|des modèles informatiques|"
                      "des capteurs au fond de la mer|un détecteur de particules",
        "s": [
            "{scientist} a publié une nouvelle étude sur {subject} en {year}.",
            "les résultats ont surpris de nombreux spécialistes.",
            "grâce à {instrument}, {scientist} a mesuré {n100_999} échantillons en {n2_9} mois.",
            "selon l'étude, {pct} pour cent des échantillons contenaient des traces d'eau.",
            "{scientist} a expliqué qu'il faut davantage de données avant de conclure.",
            "l'expérience a été répétée {n2_9} fois pour vérifier les résultats.",
            "les scientifiques étudient {subject} depuis plus de {n10_99} ans.",
            "pourquoi les chercheurs s'intéressent-ils autant à {subject} ?",
            "le nouveau modèle prévoit que l'effet doublera d'ici {future_year}.",
            "au laboratoire, chaque mesure est notée avec soin.",
            "une petite erreur dans les données peut changer toute la conclusion.",
            "la {field} a beaucoup changé depuis l'arrivée des premiers ordinateurs.",
            "l'équipe espère présenter ses résultats lors d'un congrès à {place}.",
            "le budget de la recherche a augmenté de {pct} pour cent l'an dernier.",
            "la théorie a été proposée en {year} et confirmée beaucoup plus tard.",
            "de nombreuses questions restent ouvertes.",
            "les échantillons sont conservés à moins {n10_99} degrés.",
            "avec {instrument}, l'équipe a observé {subject} avec une précision inédite.",
            "la bonne science demande de la curiosité, du travail soigné et un doute honnête.",
            "l'article a été relu par {n2_9} experts indépendants avant sa publication.",
        ],
    },
    "sport": {
        "title": [
            "{team} s'impose face à {team}", "une belle saison pour {team}", "une grande journée de sport",
            "se préparer pour le marathon", "pourquoi {@city} aime tant le sport",
        ],
        "team": "le club local|l'Olympique|l'équipe nationale|le Racing|l'équipe universitaire|"
                "le Stade|l'équipe féminine|l'équipe des jeunes",
        "sport": "le football|le tennis|le cyclisme|la natation|la course à pied|le basket|l'aviron|"
                 "le volley|le rugby|le ski",
        "s": [
            "{team} a gagné le match {score} après une première mi-temps difficile.",
            "{person} s'entraîne {when_habit} et court environ {n10_99} kilomètres par semaine.",
            "le stade était plein, avec plus de {n10_99} mille supporters.",
            "à la dernière minute, le gardien a arrêté un penalty.",
            "l'entraîneur n'était pas content de la défense.",
            "{sport} est le sport le plus populaire à {@city}.",
            "la course commence à {clock} près de la rivière.",
            "qui va gagner le championnat cette année ?",
            "après une blessure en {month}, {person} est enfin de retour sur le terrain.",
            "l'équipe a gagné {n2_9} de ses dix derniers matchs.",
            "les billets pour la finale coûtent {price} euros.",
            "les jeunes joueurs ont besoin de temps, de patience et d'un bon entraîneur.",
            "les cyclistes ont grimpé la montagne sous une pluie battante.",
            "{person} a terminé le marathon en {n2_9} heures et {minutes} minutes.",
            "l'arbitre a interrompu le match pendant dix minutes à cause de l'orage.",
            "tous les {day}s, les enfants font du sport dans le parc derrière l'école.",
            "{team} a perdu {score} à domicile, et les supporters sont rentrés en silence.",
            "un bon échauffement protège les muscles des blessures.",
            "la nouvelle piscine ouvre à {clock} tous les matins.",
            "{person} pratique {sport} depuis l'âge de {n2_9} ans.",
        ],
    },
    "city": {
        "title": [
            "la vie à {@city}", "un nouveau projet pour {@city}", "ce qui change à {@city}",
            "{@city} la nuit", "promenade dans {district}",
        ],
        "building": "une bibliothèque|un pont|un parc|une ligne de tramway|une piscine|un marché couvert|"
                    "une piste cyclable|une école|un cinéma|une salle de concert",
        "district": "la vieille ville|le quartier du port|la banlieue nord|le centre-ville|"
                    "le quartier universitaire|les quartiers de l'est",
        "s": [
            "le conseil municipal a approuvé {building} dans {district}.",
            "les loyers à {@city} ont augmenté de {pct} pour cent en {n2_9} ans.",
            "{person} habite au {ordinal} étage d'un vieil immeuble près de la gare.",
            "chaque matin, des milliers de personnes prennent le bus pour aller travailler.",
            "la circulation dans {district} est terrible entre {clock} et {clock}.",
            "une petite boulangerie a ouvert le mois dernier au coin de notre rue.",
            "{people} veulent plus d'arbres et moins de voitures dans {district}.",
            "la nouvelle ligne de tramway reliera {district} et {district}.",
            "la nuit, les rues de {@city} sont calmes et silencieuses.",
            "le musée est gratuit le premier {day} de chaque mois.",
            "{person} tient le même café dans {district} depuis {n10_99} ans.",
            "comment une grande ville peut-elle rester verte et agréable ?",
            "la rénovation du bâtiment coûtera {n2_9} millions d'euros.",
            "le {day}, un marché remplit la place principale de couleurs et de bruit.",
            "beaucoup de jeunes familles partent s'installer en banlieue.",
            "la bibliothèque reste ouverte jusqu'à {clock} pendant les examens.",
            "{people} se plaignent du bruit du chantier dans {district}.",
            "{building} changerait la vie de tout le quartier.",
            "à {@city}, presque tout le monde va travailler à vélo.",
            "la vieille usine de {district} accueille aujourd'hui des artistes et des petites boutiques.",
        ],
    },
}

PASSKEY = {
    "intro": "Le code secret est {passkey}. Retenez-le.",
    "question": "Quel est le code secret ?",
    "answer": "Le code secret est {passkey}.",
}

PII = [
    "pour plus d'informations, écrivez à {email}.",
    "les questions peuvent être envoyées à {email} avant {day}.",
    "l'ancien site était hébergé sur un serveur à l'adresse {ip}.",
    "vous pouvez contacter {name} directement à l'adresse {email}.",
    "l'imprimante du bureau a l'adresse {private_ip}.",
    "l'attaque venait de l'adresse {ip}, selon les techniciens.",
    "la box de la maison répond à {private_ip}, mais l'adresse publique était {ip}.",
]

BOILERPLATE = {
    "nav": [
        "Accueil | Actualités | Météo | Sport | Contact",
        "Accueil | À propos | Blog | Boutique | Contact",
        "Aller au contenu principal",
        "Menu | Rechercher | Connexion | S'inscrire",
    ],
    "cookie": [
        "Ce site utilise des cookies pour améliorer votre expérience. Accepter les cookies",
        "En poursuivant votre navigation, vous acceptez l'utilisation de cookies.",
    ],
    "share": [
        "Partager sur Facebook | Twitter | WhatsApp | E-mail",
        "Abonnez-vous à notre newsletter",
        "Suivez-nous sur Instagram",
        "Lire la suite",
    ],
    "footer": [
        "© {year} {site}. Tous droits réservés.",
        "Politique de confidentialité | Mentions légales | Gestion des cookies",
        "Copyright {year} {site} - Tous droits réservés",
    ],
}

SPAM = {
    "phrases": [
        "achetez des montres pas cher", "meilleur prix garanti", "cliquez ici maintenant",
        "livraison gratuite aujourd'hui", "offre limitée", "commandez maintenant", "vols pas cher hôtels pas cher",
        "gagnez un téléphone gratuit", "gagnez de l'argent à la maison", "perdez du poids rapidement",
    ],
    "keywords": "pas|cher|promo|gratuit|meilleur|prix|soldes|offre|achetez|maintenant",
}

SITES = [
    "www.meteo-lyon.fr", "actu.vivre-en-ville.fr", "www.cuisine-maison.fr", "blog.voyages-lents.fr",
    "www.science-actu.fr", "www.sport-regional.fr", "www.journal-local.fr",
]
