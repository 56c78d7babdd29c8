"""English grammar of the sample corpus (format: smoledge.data.lexicon)."""

COMMON = {
    "name": "Emma|Oliver|Sophie|James|Lucy|Thomas|Hannah|George|Grace|Daniel|Alice|Henry|Chloe|Samuel|Ruby|Jack",
    "surname": "Smith|Taylor|Brown|Wilson|Evans|Walker|Wright|Green|Hall|Wood|Hughes|Clarke",
    "person": [
        "{name}", "{name} {surname}", "my neighbour", "our teacher", "the old baker", "my sister",
        "a young journalist", "the mayor", "my grandfather", "a friend of mine", "the new doctor",
        "my colleague", "the shop owner", "a local farmer", "my aunt", "the head teacher",
    ],
    "people": "many families|local residents|the tourists|most visitors|young people|the children|"
              "our neighbours|the students|older people|the shop owners|most readers",
    "city": "London|Manchester|Edinburgh|Bristol|York|Cardiff|Leeds|Brighton|Oxford|Glasgow|Liverpool|Bath",
    "place": "Lisbon|Rome|Vienna|Prague|Barcelona|Amsterdam|Copenhagen|Dublin|Athens|Krakow|Seville|"
             "Florence|Porto|Berlin|Paris",
    "day": "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday",
    "month": "January|February|March|April|May|June|July|August|September|October|November|December",
    "season": "spring|summer|autumn|winter",
    "ordinal": "first|second|third|fourth|fifth|sixth|seventh|eighth",
    "when_past": [
        "yesterday", "last week", "on {day}", "last {day}", "on {day_num} {month}", "in {month} {year}",
        "a few days ago", "last summer", "two weeks ago", "in {year}", "earlier this year", "last night",
    ],
    "when_future": [
        "tomorrow", "next week", "on {day}", "this weekend", "next {month}", "in the coming days",
        "later this year", "on {day_num} {month}", "next month", "after the holidays",
    ],
    "when_habit": "every morning|on Sundays|in the evening|during the week|every {day}|in {season}|"
                  "once a month|at the weekend|most days|after work",
    "conn": "however,|of course,|in fact,|meanwhile,|for this reason,|in the end,|at the same time,|"
            "still,|on the other hand,|as a result,|luckily,|at first,",
    "s": [
        "{person} thinks that this is only the beginning.",
        "nobody knows exactly what will happen {when_future}.",
        "this is what {person} told us {when_past}.",
        "{people} agree that the situation has changed a lot since {year}.",
        "it is not always easy to explain, but the numbers speak for themselves.",
        "{person} wrote about it in a short letter to the local newspaper.",
        "more than {pct} percent of {people} said they were happy with the result.",
        "we will come back to this question in a later article.",
        "{person} remembers a time when things were very different.",
        "the story began {when_past}, in a small street in {@city}.",
        "many readers asked us about this, so here are a few answers.",
        "according to {person}, the best is yet to come.",
        "as {person} likes to say, patience is the key to everything.",
        "we spoke to {person} and {person} about it over a cup of tea.",
        "the question is simple, but the answer is not.",
        "{people} in {@city} will remember this {season} for a long time.",
    ],
}

TOPICS = {
    "weather": {
        "title": [
            "weather forecast for {@city}", "{cond} expected in {@city} {when_future}",
            "why {season} in {@city} feels so different", "a week of {cond} in {@city}",
            "how to read the clouds",
        ],
        "cond": "heavy rain|light showers|bright sunshine|thick fog|strong winds|a violent storm|freezing rain|"
                "clear skies|scattered clouds|snow|hail|warm sunshine|grey drizzle",
        "sky": "grey|cloudy|bright blue|dark|clear|stormy|pale|heavy with clouds",
        "direction": "north|south|east|west|north-west|south-east",
        "adj": "cold|mild|warm|humid|dry|windy|wet|short|long|bright|calm",
        "s": [
            "the forecast for {day} promises {cond} in {@city}.",
            "{when_past}, the temperature in {@city} reached {temp} degrees.",
            "after {n2_9} days of {cond}, the weather finally changed.",
            "{person} always carries an umbrella, because the weather in {@city} changes quickly.",
            "strong winds from the {direction} brought {cond} to the coast.",
            "forecasters expect about {n10_99} millimetres of rain {when_future}.",
            "the sky was {sky} {when_past}, and the streets were wet and empty.",
            "will it snow in {@city} this winter?",
            "in {season}, the days in {@city} are {adj} and often {adj}.",
            "{person} checked the weather report before leaving the house.",
            "a thick fog covered the valley until {clock} in the morning.",
            "according to the national weather service, {month} was the wettest month since {year}.",
            "thunderstorms are likely in the north, while the south will stay dry and sunny.",
            "the wind was so strong that several trees fell on the road to {city}.",
            "farmers are worried, because it has not rained for {n2_9} weeks.",
            "{when_habit}, {person} looks at the clouds and tries to guess the weather.",
            "the air feels {adj} today, and the report speaks of {cond} for {day}.",
            "after the storm, a bright rainbow appeared above the river.",
            "temperatures will drop to {temp} degrees during the night.",
            "in the mountains, the first snow fell on {day_num} {month}.",
            "the weather station on the roof records the wind speed every ten minutes.",
        ],
    },
    "cooking": {
        "title": [
            "how to make {dish} at home", "a simple recipe for {@dish}", "{@dish} like my grandmother made it",
            "{n2_9} tips for better {dish}", "what to cook in {season}",
        ],
        "dish": "vegetable soup|apple pie|tomato sauce|roast chicken|lemon cake|fresh pasta|fish stew|"
                "potato salad|mushroom risotto|banana bread|pancakes|onion tart|pea soup|carrot cake",
        "veg": "the onions|the carrots|the potatoes|the tomatoes|the mushrooms|the apples|the peppers|"
               "the courgettes|the leeks|the cabbage",
        "ingredient": "fresh tomatoes|two onions|a little butter|three eggs|some garlic|a cup of flour|"
                      "a pinch of salt|a little olive oil|green beans|brown sugar|warm milk|fresh herbs|"
                      "grated cheese|a spoon of honey|lemon juice|black pepper|a handful of walnuts",
        "fat": "a little butter|some olive oil|a spoon of sunflower oil",
        "tool": "a large pan|a heavy pot|a mixing bowl|a deep frying pan|a baking tin",
        "side": "a piece of bread|a green salad|fresh cream|white rice|roasted potatoes|a glass of cider",
        "produce": "ripe strawberries|fresh asparagus|sweet cherries|pumpkins|wild mushrooms|juicy peaches|"
                   "green apples|young carrots|plums|fresh peas",
        "s": [
            "first, cut {veg} into small pieces.",
            "heat {fat} in {tool} over a medium flame.",
            "add {ingredient} and stir gently for {n2_9} minutes.",
            "bake it in the oven for {minutes} minutes at {oven} degrees.",
            "{person} says that the secret of a good {@dish} is patience.",
            "serve it warm with {side}.",
            "this recipe takes about {n10_99} minutes and serves {n2_9} people.",
            "my grandmother made {@dish} every {day}, and the whole house smelled wonderful.",
            "if the sauce is too thick, add a little water.",
            "in {season}, the market is full of {produce}.",
            "you can keep the {@dish} in the fridge for {n2_9} days.",
            "do you prefer {dish} or {dish}?",
            "taste the sauce and add salt and pepper if necessary.",
            "a sharp knife makes the work in the kitchen much easier.",
            "the dough must rest for at least one hour before baking.",
            "{person} bought {produce} at the market for {price} pounds.",
            "let the cake cool down before you cut it.",
            "mix {ingredient} with {ingredient} in {tool}.",
            "my first attempt at {dish} was a disaster, but I learned a lot.",
            "cooking for friends is one of the simple pleasures of life.",
            "wash {veg} carefully and dry them with a clean towel.",
        ],
    },
    "travel": {
        "title": [
            "{n2_9} days in {@place}", "a weekend trip to {@place}", "travelling by train through {region}",
            "what to see in {@place}", "our summer in {region}",
        ],
        "region": "Bavaria|Scotland|the south of Spain|Tuscany|Norway|the Atlantic coast|the Lake District|"
                  "Provence|Cornwall|Sicily",
        "transport": "by train|by bus|by bike|on foot|by ferry|by car|by plane",
        "sight": "the old cathedral|the castle on the hill|the harbour|the main square|the botanical garden|"
                 "the city walls|the national museum|the old bridge|the market hall|the lighthouse",
        "lodging": "a small hotel near the station|a guest house by the sea|a youth hostel|"
                   "a flat in the old town|a campsite in the forest|a farm outside the village",
        "s": [
            "we travelled {transport} from {city} to {@place} in {n2_9} hours.",
            "the journey to {@place} took longer than expected because of a strike.",
            "{person} booked {lodging} for {n2_9} nights.",
            "the ticket cost {price} pounds, which is cheap for such a long trip.",
            "on the first day, we visited {sight} and {sight}.",
            "the view from {sight} is worth the long climb.",
            "if you go to {@place}, do not miss {sight}.",
            "is it better to travel {transport} or {transport}?",
            "the train left at {clock} and arrived just before midnight.",
            "we walked {n10_99} kilometres along the coast and saw dolphins near the rocks.",
            "the locals were friendly and showed us a quiet restaurant near {sight}.",
            "our guide spoke {n2_9} languages and knew every street of the old town.",
            "in {season}, {region} is full of visitors, so book early.",
            "{person} lost a suitcase at the airport but found it two days later.",
            "the best time to visit {region} is in {month}.",
            "do not forget your passport, a good map and comfortable shoes.",
            "from the window of the train we saw lakes, forests and small villages.",
            "we stayed in {lodging} and paid {price} pounds a night.",
            "the ferry to the island leaves twice a day in {season}.",
            "travelling slowly is the best way to understand a country.",
        ],
    },
    "science": {
        "title": [
            "new study on {subject}", "what scientists learned about {subject}", "a discovery in {field}",
            "how researchers study {subject}", "the future of {field}",
        ],
        "field": "astronomy|biology|chemistry|physics|geology|medicine|climate research|computer science|"
                 "marine biology|genetics",
        "subject": "black holes|honey bees|ocean currents|the human brain|volcanoes|bacteria|solar energy|"
                   "the immune system|comets|coral reefs|glaciers|sleep|ancient forests",
        "scientist": "a team of researchers|the young physicist|Professor {surname}|Dr {surname}|"
                     "a group of students|the laboratory director",
        "instrument": "a powerful telescope|a new microscope|a small satellite|computer models|"
                      "sensors on the sea floor|a particle detector",
        "s": [
            "{scientist} published a new study about {subject} in {year}.",
            "the results surprised many experts who study {subject}.",
            "using {instrument}, {scientist} measured {n100_999} samples in {n2_9} months.",
            "according to the study, {pct} percent of the samples contained traces of water.",
            "{scientist} explained that more data is needed before drawing conclusions.",
            "the experiment was repeated {n2_9} times to check the results.",
            "scientists have studied {subject} for more than {n10_99} years.",
            "why do scientists care so much about {subject}?",
            "the new model predicts that the effect will double by {future_year}.",
            "in the laboratory, every measurement is written down carefully.",
            "a small error in the data can change the whole conclusion.",
            "{field} has changed a lot since the first computers were built.",
            "the team hopes to present the results at a conference in {place}.",
            "funding for research in {field} increased by {pct} percent last year.",
            "the theory was first proposed in {year} and confirmed much later.",
            "many questions about {subject} remain open.",
            "the samples are stored at minus {n10_99} degrees.",
            "with {instrument}, the team observed {subject} for the first time in such detail.",
            "good science needs curiosity, careful work and honest doubt.",
            "the paper was reviewed by {n2_9} independent experts before publication.",
        ],
    },
    "sport": {
        "title": [
            "{team} wins against {team}", "a great season for {team}", "a big day for {sport}",
            "training for the marathon", "why everyone in {@city} loves {sport}",
        ],
        "team": "the local club|City United|the national team|the Rovers|the university team|Athletic|"
                "the women's team|the youth team",
        "sport": "football|tennis|cycling|swimming|running|basketball|rowing|volleyball|rugby|skiing",
        "s": [
            "{team} won the match {score} after a difficult first half.",
            "{person} trains {when_habit} and runs about {n10_99} kilometres a week.",
            "the stadium was full, with more than {n10_99} thousand supporters.",
            "in the last minute, the goalkeeper saved a penalty.",
            "the coach was not happy with the defence.",
            "{sport} is the most popular sport in {@city}.",
            "the race starts at {clock} near the river.",
            "who will win the championship this year?",
            "after an injury in {month}, {person} is finally back on the field.",
            "the team has won {n2_9} of its last ten games.",
            "tickets for the final cost {price} pounds.",
            "young players need time, patience and a good coach.",
            "the cyclists climbed the mountain in heavy rain.",
            "{person} finished the marathon in {n2_9} hours and {minutes} minutes.",
            "the referee stopped the game for ten minutes because of the storm.",
            "every {day}, children play {sport} in the park behind the school.",
            "{team} lost {score} at home, and the fans went home in silence.",
            "a good warm-up protects the muscles from injuries.",
            "the new swimming pool is open from {clock} every morning.",
            "{person} has played {sport} since the age of {n2_9}.",
        ],
    },
    "city": {
        "title": [
            "life in {@city}", "a new {building} for {@city}", "what is changing in {@city}",
            "{@city} after dark", "a walk through {district}",
        ],
        "building": "library|bridge|park|tram line|swimming pool|market|cycle path|school|cinema|concert hall",
        "district": "the old town|the harbour district|the northern suburbs|the city centre|"
                    "the university quarter|the east side",
        "s": [
            "the city council approved a new {building} in {district}.",
            "rents in {@city} have risen by {pct} percent in {n2_9} years.",
            "{person} lives on the {ordinal} floor of an old building near the station.",
            "every morning, thousands of people take the bus to work.",
            "the traffic in {district} is terrible between {clock} and {clock}.",
            "a small bakery opened last month on the corner of our street.",
            "{people} want more trees and fewer cars in {district}.",
            "the new tram line will connect {district} with {district}.",
            "at night, the streets of {@city} are calm and quiet.",
            "the museum is free on the first {day} of every month.",
            "{person} has run the same café in {district} for {n10_99} years.",
            "how can a big city stay green and pleasant?",
            "the renovation of the {building} will cost {n2_9} million pounds.",
            "on {day}, a street market fills the main square with colours and noise.",
            "many young families are moving to the suburbs.",
            "the library stays open until {clock} during the exam period.",
            "{people} complain about the noise of the building site in {district}.",
            "a new {building} would change the life of the whole neighbourhood.",
            "in {@city}, almost everyone goes to work by bike.",
            "the old factory in {district} is now full of artists and small shops.",
        ],
    },
}

PASSKEY = {
    "intro": "The passkey is {passkey}. Remember it.",
    "question": "What is the passkey?",
    "answer": "The passkey is {passkey}.",
}

PII = [
    "for more information, write to {email}.",
    "questions can be sent to {email} before {day}.",
    "the old website was hosted on a server at {ip}.",
    "you can contact {name} directly at {email}.",
    "the printer in our office has the address {private_ip}.",
    "the attack came from the address {ip}, according to the technicians.",
    "the router at home answers at {private_ip}, but the public address was {ip}.",
]

BOILERPLATE = {
    "nav": [
        "Home | News | Weather | Sport | Contact",
        "Home | About us | Blog | Shop | Contact",
        "Skip to main content",
        "Menu | Search | Log in | Register",
    ],
    "cookie": [
        "We use cookies to improve your experience. Accept cookies",
        "This website uses cookies. By continuing you agree to our cookie policy.",
    ],
    "share": [
        "Share on Facebook | Twitter | WhatsApp | Email",
        "Subscribe to our newsletter",
        "Follow us on Instagram",
        "Read more",
    ],
    "footer": [
        "© {year} {site}. All rights reserved.",
        "Privacy policy | Terms of use | Cookie settings",
        "Copyright {year} {site} - All rights reserved",
    ],
}

SPAM = {
    "phrases": [
        "buy cheap watches online", "best price guaranteed", "click here now", "free shipping today",
        "limited offer", "order now and save", "cheap flights cheap hotels", "win a free phone",
        "earn money from home", "lose weight fast",
    ],
    "keywords": "cheap|deals|best|free|discount|sale|online|offer|buy|now",
}

SITES = [
    "www.dailyweather.co.uk", "news.citylife.co.uk", "www.kitchenstories.com", "blog.slowtravel.org",
    "www.sciencetoday.org", "www.sportsdesk.co.uk", "www.localvoice.com",
]
